"""The ``pipectl.dev/prune`` finalizer of PipelineRelease objects (``--source kubernetes``; the
decisions are ``controller.rollout.deletion``, the teardown ``controller.engine.teardown``).

``Finalizer.reconcile`` runs before each pass of a release read from an object
(``Controller.process``):

- an object not being deleted gets the finalizer if it lacks it (``KubeApi.set_finalizers``, a
  JSON patch guarded by the object's uid), and the usual pass runs;
- an object being deleted is not reconciled towards its spec any more. With the annotation
  ``pipectl.dev/deletion-policy: orphan`` the finalizer is removed at once and every resource is
  left in place. Otherwise each stage is torn down: jobs stopped, every inventoried resource a
  delete awaiting approval. The release's Ready condition (reason ``Deleting``, on the object's
  status too) and a ``DeletionAwaitingApproval`` Event say which actions wait and the command that
  approves each; once nothing of the release is left the finalizer is removed (a ``Pruned`` Event)
  and the API server deletes the object.

An API error is logged and retried at the next pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.engine import teardown
from controller.engine.kube_source import KubeSource
from controller.engine.passes import Result
from controller.engine.reconciler import Reconciler
from controller.model.reasons import Reason
from controller.model.status import Condition, set_condition
from controller.obs.logging import get_logger
from controller.rollout.deletion import Policy, decide, policy_of, with_finalizer, without_finalizer
from controller.source.objects import FINALIZER, ObjectRef
from controller.source.validate import RepoSnapshot

__all__ = ["Finalizer"]

_log = get_logger(__name__)

WAIT = 10.0
"""Seconds between teardown passes while deletes await approval (an approval also wakes it)."""
AGAIN = 2.0
"""Seconds to the next teardown pass after one that applied something."""


class Finalizer:
    def __init__(self, source: KubeSource, rec: Reconciler) -> None:
        self.source = source
        self.rec = rec
        self._said: dict[str, str] = {}
        self._released: set[str] = set()
        """uids whose finalizer this process removed (the next list no longer shows them)."""

    def reconcile(self, snap: RepoSnapshot, name: str) -> Result | None:
        """None: run the release's usual pass; a Result: the object is being deleted, handled."""
        ref = self.source.ref(name)
        if ref is None:
            return None
        if not ref.deleting:
            if self._patch(ref, with_finalizer(ref.finalizers)):
                _log.info("finalizer_added", release=ref.shown, finalizer=FINALIZER)
            return None
        if FINALIZER not in ref.finalizers or ref.uid in self._released:
            return Result()  # not held by pipectl: the API server deletes it
        policy, problem = policy_of(ref.deletion_policy)
        if policy is Policy.ORPHAN:
            self._release(ref, "Orphaned", f"deletion-policy orphan: finalizer {FINALIZER} removed; "
                          f"the resources of {name} are left in place")
            return Result()
        stages = teardown.run(self.rec, snap, name)
        verdict = decide(name, stages, problem)
        if verdict.done:
            self._release(ref, "Pruned", verdict.message)
            return Result()
        self._waiting(ref, name, verdict.message, any(s.pending for s in stages))
        return Result(requeue_after=AGAIN if any(s.changed for s in stages) else WAIT)

    def _patch(self, ref: ObjectRef, finalizers: Sequence[str] | None) -> bool:
        if finalizers is None:
            return False
        try:
            self.source.api.set_finalizers(ref.namespace, ref.name, ref.uid, finalizers)
        except Exception as e:
            _log.warning("finalizer_patch_failed", release=ref.shown, error=str(e))
            return False
        return True

    def _release(self, ref: ObjectRef, reason: str, message: str) -> None:
        if self._patch(ref, without_finalizer(ref.finalizers)):
            self._released.add(ref.uid)
            _log.info("finalizer_removed", release=ref.shown, reason=reason)
            self._event(ref, "Normal", reason, message)

    def _waiting(self, ref: ObjectRef, name: str, message: str, approvals: bool) -> None:
        """Ready=False (Deleting) with what the deletion waits for; an Event when that changes."""
        status = self.rec.load_status(name)
        before = next((c.message for c in status.conditions if c.type == "Ready"), None)
        cond = Condition(type="Ready", status="False", reason=Reason.DELETING, message=message,
                         last_transition_time=self.rec.clock())
        status.conditions = set_condition(status.conditions, cond)
        self.rec.store.put_status(name, status.model_dump(mode="json", by_alias=True))
        if self.rec.on_status is not None:
            self.rec.on_status(name, status)
        if self._said.get(ref.uid, before) != message:
            self._event(ref, "Warning", "DeletionAwaitingApproval" if approvals else "Deleting", message)
        self._said[ref.uid] = message

    def _event(self, ref: ObjectRef, kind: str, reason: str, message: str) -> None:
        try:
            self.source.api.create_event(ref.namespace, ref.name, ref.uid, kind, reason, message)
        except Exception as e:
            _log.warning("kube_event_failed", release=ref.shown, reason=reason, error=str(e))
