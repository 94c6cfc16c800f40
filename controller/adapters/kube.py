"""The Kubernetes API as the ``--source kubernetes`` controller uses it: PipelineRelease objects
(list, status subresource, finalizers) and core/v1 Events in their namespaces.

Credentials: ``KUBECONFIG`` (or ``~/.kube/config``) when set or present, else the pod's service
account. The ``kubernetes`` SDK is imported lazily, so a git-only controller never loads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

GROUP = "pipectl.dev"
VERSION = "v1alpha1"
PLURAL = "pipelinereleases"
KIND = "PipelineRelease"

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "KubeApi"]


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
        from kubernetes import client, config

        path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if Path(path).exists():
            return cls(config.new_client_from_config(config_file=path), namespaces)  # type: ignore[no-untyped-call]
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return cls(client.ApiClient(), namespaces)

    def list_releases(self) -> list[dict[str, Any]]:
        """Every PipelineRelease in the namespaces read (one consistent list per namespace)."""
        if not self.namespaces:
            out = cast(dict[str, Any], self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
            return list(out.get("items") or [])
        items: list[dict[str, Any]] = []
        for ns in self.namespaces:
            got = cast(dict[str, Any], self._custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL))
            items.extend(got.get("items") or [])
        return items

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
