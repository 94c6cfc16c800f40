"""``controller run --source kubernetes``: PipelineRelease objects on an API server are the
releases; the repository given with ``--repo`` carries the environments and the files the
objects' specs reference (schemas, job code, DAGs, SQL).

Level-triggered: every refresh reads the objects (all namespaces or the ``--namespace`` ones) from
the watch's cache (``controller/engine/kube_watch.py``: one LIST, then a WATCH that keeps it current
and wakes the controller when an object's spec changes; without a cache, ``KubeApi.list_releases``
lists them anew) and validates them with the repository's environments through the
same ``load_repo`` a git checkout goes through (``release_docs``), so problems name
``namespace/name`` and the field path. The snapshot's ``commit`` stays the repository's commit:
it is what the referenced files are read from. An object being deleted stays in the snapshot,
named in ``RepoSnapshot.deleting``: its finalizer tears the release down
(``controller.engine.kube_finalizer``).

Status goes to the object's status subresource (``KubeStatus``): the release status with
``observedGeneration`` and Ready/Progressing conditions; stage transitions become core/v1 Events
(promotions, gate failures, rollbacks), after a restart measured against the status the object
carries, so a restarted controller does not announce them again. Both are best effort: an API
error is logged and the next pass writes again. Audit records name the object
(``details.object``: namespace, name, uid, generation).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from controller.adapters.kube import KubeApi
from controller.audit.ledger import AuditRecord
from controller.engine.kube_watch import ObjectCache
from controller.model.reasons import Phase, Reason
from controller.model.status import Condition, ReleaseStatus, set_condition
from controller.obs.logging import get_logger
from controller.source.git import Checkout, GitSource
from controller.source.objects import ObjectRef, object_ref, release_document
from controller.source.validate import RepoSnapshot, load_repo

__all__ = ["KubeSource", "KubeStatus", "progressing", "stage_events"]

_log = get_logger(__name__)

_BUSY = (Phase.PENDING, Phase.PROGRESSING, Phase.VERIFYING)
_OBJECT_ONLY = ("observedGeneration", "gates")


class KubeSource:
    """A ``GitSource`` for environments and files, PipelineRelease objects for the releases."""

    def __init__(self, git: GitSource, api: KubeApi, cache: ObjectCache | None = None) -> None:
        self.git = git
        self.api = api
        self.cache = cache
        """The watch's objects (``controller run``); None: each load lists them."""
        self.objects: dict[str, ObjectRef] = {}
        """Release name → the object it was read from (last refresh)."""
        self.written: dict[str, dict[str, Any]] = {}
        """Release name → the status the object had (what an earlier controller wrote)."""
        self._lock = threading.Lock()

    @property
    def repo(self) -> str:
        return self.git.repo

    @property
    def policy(self) -> Any:
        return self.git.policy

    @policy.setter
    def policy(self, value: Any) -> None:
        self.git.policy = value

    def resolve(self) -> str | None:
        return self.git.resolve()

    def checkout(self, commit: str | None) -> Checkout:
        return self.git.checkout(commit)

    def pin(self, ref: str, commit: str | None) -> None:
        self.git.pin(ref, commit)

    def load(self, root: Path) -> RepoSnapshot:
        """Read the objects (cache, else a list) and validate them against the checkout at ``root``."""
        items = self.cache.items() if self.cache is not None else self.api.list_releases()
        refs = [object_ref(o) for o in items]
        docs = [release_document(o) for o in items]
        with self._lock:
            self.objects = {r.name: r for r in refs}
            self.written = {r.name: dict(o.get("status") or {}) for o, r in zip(items, refs, strict=True)}
        snap = load_repo(root, release_docs=docs)
        snap.deleting = {r.name for r in refs if r.deleting}
        return snap

    def ref(self, name: str) -> ObjectRef | None:
        with self._lock:
            return self.objects.get(name)

    def annotate(self, rec: AuditRecord) -> None:
        """Name the object an audit record's release came from (``details.object``)."""
        ref = self.ref(rec.release)
        if ref is not None:
            rec.details.setdefault("object", {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid,
                                              "generation": ref.generation})

    def status_on_object(self, name: str) -> ReleaseStatus | None:
        """The release status the object carried when listed, None when it had none (or another
        shape): after a restart, transitions are announced against it, not again from scratch."""
        with self._lock:
            body = {k: v for k, v in self.written.get(name, {}).items() if k not in _OBJECT_ONLY}
        if not body:
            return None
        try:
            return ReleaseStatus.model_validate(body)
        except ValueError:
            return None


def progressing(
    status: ReleaseStatus, now: Any, generation: int, previous: list[Condition] | None = None
) -> list[Condition]:
    """The status's conditions plus Progressing: True while a stage is being rolled out. The
    transition time of ``previous``'s Progressing is kept while its status holds."""
    busy = status.phase in _BUSY
    reason = Reason.PROGRESSING if busy else Reason.RECONCILIATION_SUCCEEDED
    if status.phase is Phase.VERIFYING:
        reason = Reason.VERIFYING
    if not busy:
        ready = next((c for c in status.conditions if c.type == "Ready"), None)
        reason = Reason(ready.reason) if ready and ready.reason in Reason.__members__.values() else reason
    cond = Condition(type="Progressing", status="True" if busy else "False", reason=str(reason),
                     message=f"phase {status.phase}", last_transition_time=now,
                     observed_generation=generation)
    before = [c for c in previous or [] if c.type == "Progressing"]
    cond = set_condition(before, cond)[0]
    out = [c.model_copy(update={"observed_generation": generation}) for c in status.conditions]
    return set_condition(out, cond)


def stage_events(before: ReleaseStatus | None, after: ReleaseStatus) -> list[tuple[str, str, str]]:
    """(type, reason, message) for each stage whose phase or version moved: a promotion (a
    version reached Succeeded), a failed gate (Failed) and a rollback (RolledBack)."""
    out: list[tuple[str, str, str]] = []
    for stage, st in sorted(after.stages.items()):
        old = before.stages.get(stage) if before is not None else None
        if old is not None and (old.phase, old.version) == (st.phase, st.version):
            continue
        why = f": {st.message}" if st.message else ""
        if st.phase is Phase.SUCCEEDED:
            out.append(("Normal", "Promoted", f"{st.version} succeeded at stage {stage}"))
        elif st.phase is Phase.FAILED:
            failed = [g.name for g in st.gates if str(g.verdict).lower() == "fail"]
            reason = "GateFailed" if failed else str(st.reason or "Failed")
            gates = f" (gates: {', '.join(failed)})" if failed else ""
            out.append(("Warning", reason, f"{st.version} failed at stage {stage}{gates}{why}"))
        elif st.phase in (Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED):
            out.append(("Warning", str(st.phase), f"stage {stage} rolled back from {st.version}{why}"))
    return out


class KubeStatus:
    """Writes a release's status to its object and announces stage transitions as Events."""

    def __init__(self, source: KubeSource, clock: Any) -> None:
        self.source = source
        self.clock = clock
        self._last: dict[str, ReleaseStatus] = {}
        self._conditions: dict[str, list[Condition]] = {}

    def __call__(self, name: str, status: ReleaseStatus) -> None:
        ref = self.source.ref(name)
        if ref is None:  # not (or no longer) an object: nothing to write to
            return
        body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        conditions = progressing(status, self.clock(), ref.generation, self._conditions.get(name))
        self._conditions[name] = conditions
        body["conditions"] = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]
        body["observedGeneration"] = ref.generation
        body["gates"] = gate_summary(status)
        try:
            self.source.api.patch_status(ref.namespace, ref.name, body)
        except Exception as e:
            _log.warning("kube_status_failed", release=ref.shown, error=str(e))
        before = self._last[name] if name in self._last else self.source.status_on_object(name)
        events = stage_events(before, status)
        self._last[name] = status.model_copy(deep=True)
        for kind, reason, message in events:
            try:
                self.source.api.create_event(ref.namespace, ref.name, ref.uid, kind, reason, message)
            except Exception as e:
                _log.warning("kube_event_failed", release=ref.shown, reason=reason, error=str(e))


def gate_summary(status: ReleaseStatus) -> str:
    """``passed/total`` gates at the current stage (the GATES column), ``-`` without gates."""
    st = status.stages.get(status.current_stage or "")
    if st is None or not st.gates:
        return "-"
    passed = sum(1 for g in st.gates if str(g.verdict).lower() == "pass")
    return f"{passed}/{len(st.gates)}"
