"""``--source kubernetes``: releases listed from the API (a fake of ``KubeApi``, the project's own
narrow interface), the status written to the object, and stage transitions as Events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from controller.audit.ledger import AuditRecord
from controller.engine.controller import Controller
from controller.engine.kube_source import KubeSource, KubeStatus, gate_summary, progressing, stage_events
from controller.model.reasons import Phase, Reason, Verdict
from controller.model.status import Condition, GateResult, ReleaseStatus, StageStatus
from controller.source.git import GitSource

NOW = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)


class FakeKube:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.lists = 0
        self.patched: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[tuple[str, ...]] = []
        self.fail = False

    def list_releases(self) -> list[dict[str, Any]]:
        self.lists += 1
        return self.items

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("503")
        self.patched.append((namespace, name, status))

    def create_event(self, namespace: str, name: str, uid: str, kind: str, reason: str, message: str) -> None:
        if self.fail:
            raise RuntimeError("503")
        self.events.append((namespace, name, uid, kind, reason, message))


def obj(repo: Path, ns: str = "team-a", generation: int = 1, **meta: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo / "releases" / "host-metrics.yaml").read_text())
    doc["metadata"].update({"namespace": ns, "uid": f"uid-{ns}", "generation": generation, **meta})
    return doc


def source(repo: Path, kube: FakeKube) -> KubeSource:
    return KubeSource(GitSource(str(repo), worktree=True), kube)  # type: ignore[arg-type]


def test_load_lists_objects_and_names_the_ones_being_deleted(repo: Path) -> None:
    kube = FakeKube([obj(repo)])
    src = source(repo, kube)
    snap = src.load(repo)
    assert list(snap.releases) == ["host-metrics"] and snap.releases["host-metrics"].file == "team-a/host-metrics"
    ref = src.ref("host-metrics")
    assert ref is not None and (ref.shown, ref.revision) == ("team-a/host-metrics", "uid-team-a@1")
    assert snap.deleting == set()
    kube.items = [obj(repo, deletionTimestamp="2026-12-05T11:00:00Z", finalizers=["pipectl.dev/prune"],
                      annotations={"pipectl.dev/deletion-policy": "orphan"})]
    snap = src.load(repo)  # still a release: its finalizer tears it down (kube_finalizer)
    assert list(snap.releases) == ["host-metrics"] and snap.deleting == {"host-metrics"}
    ref = src.ref("host-metrics")
    assert ref is not None and ref.deleting and ref.finalizers == ("pipectl.dev/prune",)
    assert ref.deletion_policy == "orphan"


class NoReconcile:
    stop = None


def test_the_controller_lists_the_objects_on_every_refresh_and_queues_a_changed_one(repo: Path) -> None:
    kube = FakeKube([obj(repo)])
    ctl = Controller(source(repo, kube), NoReconcile())  # type: ignore[arg-type]
    assert ctl.refresh() is not None and ctl.queue.names() == {"host-metrics"}
    assert ctl.queue.take("host-metrics")
    ctl.queue.done("host-metrics")
    ctl.queue.add("host-metrics", 30.0)  # as a pass does: due again after the interval
    ctl.refresh()  # the same directory, unchanged object: listed again, not queued again
    assert kube.lists == 2 and ctl.queue.take("host-metrics") is False
    changed = obj(repo, generation=2)
    changed["spec"]["version"] = "9.9.9"
    kube.items = [changed]
    ctl.refresh()
    assert kube.lists == 3 and ctl.queue.take("host-metrics") is True


def status(phase: Phase, dev: Phase, gates: list[GateResult] | None = None) -> ReleaseStatus:
    return ReleaseStatus(version="1.0.0", current_stage="dev", phase=phase, stages={
        "dev": StageStatus(version="1.0.0", phase=dev, gates=gates or [], message="m"),
    }, conditions=[Condition(type="Ready", status="True", reason=Reason.RECONCILIATION_SUCCEEDED,
                             last_transition_time=NOW)])


def test_progressing_follows_the_phase_and_keeps_its_transition_time() -> None:
    busy = progressing(status(Phase.PROGRESSING, Phase.PROGRESSING), NOW, 4)
    prog = next(c for c in busy if c.type == "Progressing")
    assert (prog.status, prog.reason, prog.observed_generation) == ("True", "Progressing", 4)
    assert all(c.observed_generation == 4 for c in busy)
    later = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    again = progressing(status(Phase.PROGRESSING, Phase.PROGRESSING), later, 4, busy)
    assert next(c for c in again if c.type == "Progressing").last_transition_time == NOW
    done = progressing(status(Phase.SUCCEEDED, Phase.SUCCEEDED), later, 4, busy)
    prog = next(c for c in done if c.type == "Progressing")
    assert (prog.status, prog.reason, prog.last_transition_time) == ("False", "ReconciliationSucceeded", later)


def test_stage_events_name_promotions_gate_failures_and_rollbacks() -> None:
    ok = status(Phase.SUCCEEDED, Phase.SUCCEEDED)
    assert stage_events(None, ok) == [("Normal", "Promoted", "1.0.0 succeeded at stage dev")]
    assert stage_events(ok, ok) == []  # no transition, no event
    failed = status(Phase.FAILED, Phase.FAILED, [GateResult(name="freshness", verdict=Verdict.FAIL)])
    assert stage_events(ok, failed) == [
        ("Warning", "GateFailed", "1.0.0 failed at stage dev (gates: freshness): m")]
    back = status(Phase.ROLLED_BACK, Phase.ROLLED_BACK)
    assert stage_events(failed, back) == [("Warning", "RolledBack", "stage dev rolled back from 1.0.0: m")]


def test_gate_summary_counts_passed_gates_at_the_current_stage() -> None:
    gates = [GateResult(name="a", verdict=Verdict.PASS), GateResult(name="b", verdict=Verdict.FAIL)]
    assert gate_summary(status(Phase.FAILED, Phase.FAILED, gates)) == "1/2"
    assert gate_summary(status(Phase.SUCCEEDED, Phase.SUCCEEDED)) == "-"


def test_kube_status_writes_the_object_and_never_raises(repo: Path) -> None:
    kube = FakeKube([obj(repo, generation=7)])
    src = source(repo, kube)
    src.load(repo)
    write = KubeStatus(src, lambda: NOW)
    write("host-metrics", status(Phase.SUCCEEDED, Phase.SUCCEEDED))
    ns, name, body = kube.patched[-1]
    assert (ns, name, body["observedGeneration"], body["gates"], body["phase"]) == (
        "team-a", "host-metrics", 7, "-", "Succeeded")
    assert {c["type"]: c["status"] for c in body["conditions"]} == {"Ready": "True", "Progressing": "False"}
    assert [e[3:5] for e in kube.events] == [("Normal", "Promoted")] and kube.events[0][2] == "uid-team-a"
    write("not-an-object", status(Phase.SUCCEEDED, Phase.SUCCEEDED))  # a git-only name: nothing written
    assert len(kube.patched) == 1
    kube.fail = True
    write("host-metrics", status(Phase.FAILED, Phase.FAILED))  # logged, not raised
    assert len(kube.patched) == 1


def test_after_a_restart_transitions_are_announced_against_the_status_on_the_object(repo: Path) -> None:
    done = status(Phase.SUCCEEDED, Phase.SUCCEEDED)
    written = {**done.model_dump(mode="json", by_alias=True, exclude_none=True), "observedGeneration": 1,
               "gates": "-"}
    kube = FakeKube([{**obj(repo), "status": written}])
    src = source(repo, kube)
    src.load(repo)
    write = KubeStatus(src, lambda: NOW)  # a new process: nothing announced yet
    write("host-metrics", done)
    assert kube.events == [] and len(kube.patched) == 1  # the status is written, nothing re-announced
    write("host-metrics", status(Phase.ROLLED_BACK, Phase.ROLLED_BACK))
    assert [e[4] for e in kube.events] == ["RolledBack"]


def test_audit_records_name_the_object(repo: Path) -> None:
    src = source(repo, FakeKube([obj(repo, generation=5)]))
    src.load(repo)
    rec = AuditRecord(run_id="r", kind="apply", release="host-metrics", outcome="Succeeded",
                      started_at=NOW, finished_at=NOW)
    src.annotate(rec)
    assert rec.details["object"] == {"namespace": "team-a", "name": "host-metrics", "uid": "uid-team-a",
                                     "generation": 5}
    other = rec.model_copy(update={"release": "git-only", "details": {}})
    src.annotate(other)
    assert other.details == {}
