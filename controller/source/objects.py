"""PipelineRelease objects read from a Kubernetes API server, as manifest documents.

The object carries the spec; the repository given with ``--repo`` carries the environments and
the files the spec references (schemas, job code, DAGs, SQL). ``release_document`` turns one
object into the YAML text ``load_repo(release_docs=...)`` validates exactly as a file under
``releases/``, shown as ``namespace/name`` in every problem. Only what a manifest may say is
kept: the server's own metadata (uid, resourceVersion, managedFields, finalizers, ...) and the
status are left out, as are annotations in the ``kubernetes.io`` namespaces (kubectl's
last-applied-configuration).

``FINALIZER`` is the finalizer the controller puts on every object it reconciles, and
``DELETION_POLICY`` the annotation that says what deleting the object does to the release's
resources (``controller.rollout.deletion``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["DELETION_POLICY", "FINALIZER", "ObjectRef", "object_ref", "release_document"]

FINALIZER = "pipectl.dev/prune"
DELETION_POLICY = "pipectl.dev/deletion-policy"


@dataclass(frozen=True)
class ObjectRef:
    """Which object a release came from; ``generation`` and ``uid`` are its revision identity."""

    namespace: str
    name: str
    uid: str
    generation: int
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    deletion_policy: str | None = None
    """The ``pipectl.dev/deletion-policy`` annotation, None without it."""

    @property
    def shown(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def revision(self) -> str:
        """``<uid>@<generation>``: a new object under an old name is another revision."""
        return f"{self.uid}@{self.generation}"


def object_ref(obj: Mapping[str, Any]) -> ObjectRef:
    md = obj.get("metadata") or {}
    return ObjectRef(
        namespace=str(md.get("namespace") or ""),
        name=str(md.get("name") or ""),
        uid=str(md.get("uid") or ""),
        generation=int(md.get("generation") or 0),
        deleting=bool(md.get("deletionTimestamp")),
        finalizers=tuple(md.get("finalizers") or ()),
        deletion_policy=(md.get("annotations") or {}).get(DELETION_POLICY),
    )


def _kept_annotations(md: Mapping[str, Any]) -> dict[str, Any]:
    ann = md.get("annotations") or {}
    return {k: v for k, v in ann.items() if "kubernetes.io/" not in k}


def release_document(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(``namespace/name``, the manifest's YAML) for one PipelineRelease object."""
    ref = object_ref(obj)
    md = obj.get("metadata") or {}
    meta: dict[str, Any] = {"name": md.get("name")}
    if md.get("labels"):
        meta["labels"] = dict(md["labels"])
    ann = _kept_annotations(md)
    if ann:
        meta["annotations"] = ann
    doc = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta,
           "spec": obj.get("spec")}
    return ref.shown, yaml.safe_dump(doc, sort_keys=False)
