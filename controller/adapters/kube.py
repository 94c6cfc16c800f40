"""The Kubernetes API as the ``--source kubernetes`` controller uses it: PipelineRelease objects
(list, watch, status subresource, finalizers) and core/v1 Events in their namespaces.

Credentials: ``KUBECONFIG`` (or ``~/.kube/config``) when set or present, else the pod's service
account. The ``kubernetes`` SDK is imported lazily, so a git-only controller never loads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from controller.obs import metrics

GROUP = "pipectl.dev"
VERSION = "v1alpha1"
PLURAL = "pipelinereleases"
KIND = "PipelineRelease"

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "KubeApi", "WatchExpired"]


class WatchExpired(Exception):
    """A watch's resourceVersion is older than the API server keeps (410 Gone): list again."""


class KubeApi:
    """PipelineRelease objects and Events through one ``kubernetes`` ApiClient."""

    def __init__(self, api_client: Any, namespaces: Sequence[str] = ()) -> None:
        from kubernetes import client

        self.namespaces = tuple(namespaces)
        """Namespaces to read; empty: all of them."""
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, namespaces: Sequence[str] = ()) -> KubeApi:
        return cls(api_client(), namespaces)

    def list_releases(self) -> list[dict[str, Any]]:
        """Every PipelineRelease in the namespaces read (one consistent list per namespace)."""
        scopes: Sequence[str | None] = self.namespaces or (None,)
        return [item for ns in scopes for item in self.list_scope(ns)[0]]

    def list_scope(self, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        """One LIST (``namespace`` None: all namespaces): the items and the list's resourceVersion,
        which a watch starts from. Counted in ``pipectl_kube_requests_total{verb="list"}``."""
        metrics.record_kube_request("list")
        if namespace is None:
            out = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            out = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        out = cast(dict[str, Any], out)
        return list(out.get("items") or []), str((out.get("metadata") or {}).get("resourceVersion") or "")

    def watch_scope(self, namespace: str | None, resource_version: str,
                    timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """WATCH from ``resource_version`` with bookmarks until the server ends it after
        ``timeout_seconds``: ``{"type", "object"}`` events (ADDED, MODIFIED, DELETED, BOOKMARK).
        Raises ``WatchExpired`` on 410 Gone (the version is older than the server keeps)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        metrics.record_kube_request("watch")
        func: Any = self._custom.list_cluster_custom_object
        args: tuple[str, ...] = (GROUP, VERSION, PLURAL)
        if namespace is not None:
            func, args = self._custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            func, *args, resource_version=resource_version, allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds, _request_timeout=(10, timeout_seconds + 30),
        )
        try:
            for event in stream:
                yield {"type": event["type"], "object": event["raw_object"]}
        except ApiException as e:
            if e.status == 410:
                raise WatchExpired(f"resourceVersion {resource_version}: {e.reason}") from None
            raise

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Replace the object's whole status (a merge patch would keep a removed stage)."""
        self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name,
            [{"op": "add", "path": "/status", "value": dict(status)}],
            _content_type="application/json-patch+json",
        )

    def set_finalizers(self, namespace: str, name: str, uid: str, finalizers: Sequence[str]) -> None:
        """Set ``metadata.finalizers``; the ``uid`` test makes a patch for a replaced object fail."""
        self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name,
            [{"op": "test", "path": "/metadata/uid", "value": uid},
             {"op": "add", "path": "/metadata/finalizers", "value": list(finalizers)}],
            _content_type="application/json-patch+json",
        )

    def create_event(self, namespace: str, name: str, uid: str, kind: str, reason: str,
                     message: str, component: str = "pipectl") -> None:
        """A core/v1 Event about the object; ``kind`` is Normal or Warning."""
        from kubernetes import client

        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}", kind=KIND, name=name, namespace=namespace, uid=uid
            ),
            reason=reason, message=message[:1024], type=kind, count=1,
            first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=component),
            reporting_component=component, reporting_instance=os.environ.get("HOSTNAME", "pipectl"),
        )
        self._core.create_namespaced_event(namespace, body)


def api_client() -> Any:
    """A ``kubernetes`` ApiClient: ``KUBECONFIG`` (or ``~/.kube/config``) when set or present, else
    the pod's service account; ``KubeApi.connect`` and ``LeaseElector.connect`` use it."""
    from kubernetes import client, config

    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if Path(path).exists():
        return config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()
