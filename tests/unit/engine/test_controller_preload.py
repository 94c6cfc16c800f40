"""Each refresh reads the controller-owned state rows of every release in one statement
(``Controller._preload_store``, ``store.kvcache``): the passes after it read none of those rows
one by one, and a row written between refreshes by another store is seen at the next one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from controller.engine.controller import Controller
from controller.engine.passes import Result
from controller.source.validate import RepoSnapshot
from controller.store.db import Store
from controller.store.rollout import RolloutStore
from tests.unit.engine.fakes import FakeSource, write_repo

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
NAMES = ["a", "b", "c", "d"]


@dataclass
class RolloutReader:
    """A reconciler whose pass reads the release's rollout documents and history, as a pass does."""

    store: Store
    seen: dict[str, list[str]] = field(default_factory=dict)

    def clock(self) -> datetime:
        return NOW

    def reconcile(self, snap: RepoSnapshot, name: str) -> Result:
        rollouts = RolloutStore(self.store)
        rollouts.stage(name, "dev")
        self.seen.setdefault(name, []).append(",".join(sorted(rollouts.history(name).versions)))
        return Result()


def _kv_selects(store: Store) -> list[str]:
    seen: list[str] = []

    def on(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM kv" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", on)
    return seen


def test_a_pass_over_every_release_reads_the_owned_rows_once(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_repo(root, NAMES)
    url = f"sqlite:///{tmp_path}/state.db"
    store = Store(url)
    rec = RolloutReader(store)
    ctrl = Controller(FakeSource(root, commit="c1"), rec, interval=3600.0, workers=1)  # type: ignore[arg-type]
    selects = _kv_selects(store)
    ctrl.run_once()
    assert sorted(rec.seen) == NAMES
    assert len(selects) == 1, selects  # the refresh's preload; no pass read a row of its own

    RolloutStore(Store(url)).record_promoted("a", "1.0.0", "c1", "manifest", {})  # another writer
    selects.clear()
    for name in NAMES:
        ctrl.trigger(name)
    ctrl.run_once()
    assert rec.seen["a"] == ["", "1.0.0"]  # the next refresh read it
    assert len(selects) == 1, selects
