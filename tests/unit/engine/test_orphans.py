"""A release removed from the git source says so in its status (``controller.engine.orphans``):
the controller marks it Ready=False NotInSource once per commit, stops reconciling it, and a pass
writes Ready again when its manifest comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.engine import orphans
from controller.engine.controller import Controller
from controller.engine.passes import Result
from controller.model.reasons import Reason
from controller.model.status import Condition, ReleaseStatus
from controller.source.validate import RepoSnapshot
from controller.store.db import Store
from tests.unit.engine.fakes import FakeSource, write_repo

NOW = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)


@dataclass
class PassWriter:
    """A reconciler whose pass writes Ready=True for the release, into a real state store."""

    store: Store
    passes: list[str] = field(default_factory=list)

    def clock(self) -> datetime:
        return NOW

    def reconcile(self, snap: RepoSnapshot, name: str) -> Result:
        self.passes.append(name)
        st = ReleaseStatus(version="0.1.0", observed_commit=snap.commit)
        st.conditions = [Condition(type="Ready", status="True", reason=Reason.RECONCILIATION_SUCCEEDED,
                                   message="ok", last_transition_time=NOW)]
        self.store.put_status(name, st.model_dump(mode="json", by_alias=True))
        return Result()


def ready(store: Store, name: str) -> dict[str, Any]:
    status = store.get_status(name)
    assert status is not None
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_a_removed_release_is_marked_once_and_a_returning_one_is_ready_again(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_repo(root, ["a", "b"])
    store = Store(f"sqlite:///{tmp_path}/state.db")
    rec = PassWriter(store)
    src = FakeSource(root, commit="c1")
    ctrl = Controller(src, rec, interval=3600.0, workers=1)  # type: ignore[arg-type]
    ctrl.run_once()
    assert sorted(rec.passes) == ["a", "b"] and ready(store, "b")["status"] == "True"

    write_repo(root, ["a"])
    src.commit = "c2abcdef0123456789"
    rec.passes.clear()
    ctrl.run_once()
    cond = ready(store, "b")
    assert (cond["status"], cond["reason"]) == ("False", "NotInSource")
    assert "commit c2abcdef0123" in cond["message"] and "not reconciled" in cond["message"]
    assert ready(store, "a")["status"] == "True"
    assert "b" not in rec.passes

    before = store.list_statuses()
    writes: list[str] = []
    real = store.put_status

    def counting(name: str, *a: Any, **k: Any) -> None:
        writes.append(name)
        real(name, *a, **k)

    store.put_status = counting  # type: ignore[method-assign,assignment]
    ctrl.run_once()  # the same commit: nothing marked again
    ctrl.trigger()
    ctrl.run_once()
    assert "b" not in writes and store.list_statuses()["b"] == before["b"]

    write_repo(root, ["a", "b"])
    src.commit = "c3"
    ctrl.run_once()
    assert "b" in rec.passes and ready(store, "b")["status"] == "True"


def test_marking_is_idempotent_per_commit_and_keeps_other_conditions() -> None:
    st = ReleaseStatus(version="1.0.0")
    st.conditions = [
        Condition(type="Ready", status="True", reason=Reason.RECONCILIATION_SUCCEEDED, message="ok",
                  last_transition_time=NOW),
        Condition(type="Stalled", status="False", reason=Reason.RECONCILIATION_SUCCEEDED, message="",
                  last_transition_time=NOW),
    ]
    once = orphans.marked(st.model_dump(mode="json", by_alias=True), "c9", NOW)
    assert once is not None
    assert orphans.marked(once, "c9", NOW) is None
    again = orphans.marked(once, "c10", NOW)  # a later commit names itself
    assert again is not None and "commit c10" in next(c for c in again["conditions"] if c["type"] == "Ready")["message"]
    assert [c["type"] for c in once["conditions"]] == ["Ready", "Stalled"]


def test_only_the_undeclared_releases_statuses_are_read(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/state.db")
    for name in ("a", "b", "c"):
        store.put_status(name, ReleaseStatus(version="0.1.0").model_dump(mode="json", by_alias=True))
    read: list[str] = []
    real = store.get_status

    def counting(name: str) -> dict[str, Any] | None:
        read.append(name)
        return real(name)

    store.get_status = counting  # type: ignore[method-assign]
    assert orphans.mark(store, ["a", "c"], "c9", lambda: NOW) == ["b"]
    assert read == ["b"]  # a 1,000-release source parses one status per commit, not 1,000
    assert orphans.mark(store, ["a", "c"], "c9", lambda: NOW) == []  # already marked: not rewritten
