"""Mirror each release's status into the ``status`` subresource of its PipelineRelease object.

Git stays the source of truth; the custom resource is a window for people who live in
``kubectl`` (``kubectl get pipelinereleases`` shows version, stage and phase through the CRD's
printer columns). Mirroring is best effort: a missing object (the release was never applied as a
custom resource) or an API error is logged and skipped, never fails a reconcile pass.

The patch is a JSON patch ``add /status``, which replaces the whole status: a merge patch would
leave a stage removed from git behind in ``status.stages``.

The ``kubernetes`` SDK is imported lazily: without ``PIPECTL_STATUS_MIRROR`` it is never loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from controller.model.status import ReleaseStatus
from controller.obs.logging import get_logger

__all__ = ["GROUP", "PLURAL", "VERSION", "StatusMirror"]

GROUP = "pipectl.dev"
VERSION = "v1alpha1"
PLURAL = "pipelinereleases"

_log = get_logger(__name__)


class StatusMirror:
    """Patches ``pipelinereleases.pipectl.dev/<name>`` status in ``namespace``; a no-op without an API."""

    def __init__(self, api: Any = None, namespace: str = "default") -> None:
        self._api = api
        self.namespace = namespace

    @classmethod
    def disabled(cls) -> StatusMirror:
        return cls(None)

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> StatusMirror:
        """Service-account credentials; the pod's namespace unless one is given."""
        from kubernetes import client, config

        from controller.engine.leader import in_cluster_namespace

        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return cls(client.CustomObjectsApi(), namespace or in_cluster_namespace())

    @classmethod
    def from_env(cls) -> StatusMirror:
        """Enabled by ``PIPECTL_STATUS_MIRROR=true`` (namespace: ``PIPECTL_STATUS_NAMESPACE``)."""
        if os.environ.get("PIPECTL_STATUS_MIRROR", "").lower() not in ("1", "true", "yes"):
            return cls.disabled()
        return cls.in_cluster(os.environ.get("PIPECTL_STATUS_NAMESPACE") or None)

    @property
    def enabled(self) -> bool:
        return self._api is not None

    def mirror(self, name: str, status: ReleaseStatus) -> bool:
        """Mirror a release's status model (camelCase, as the CRD's status schema expects)."""
        return self.patch_status(name, status.model_dump(mode="json", by_alias=True, exclude_none=True))

    def patch_status(self, name: str, status: Mapping[str, Any]) -> bool:
        """Replace the object's status; True when the API server accepted it."""
        if self._api is None:
            return False
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                [{"op": "add", "path": "/status", "value": dict(status)}],
                _content_type="application/json-patch+json",
            )
        except Exception as e:
            code = getattr(e, "status", None)
            if code == 404:
                _log.debug("status_mirror_skipped", release=name, why="no PipelineRelease object")
            else:
                _log.warning("status_mirror_failed", release=name, status_code=code, error=str(e))
            return False
        return True
