"""A ``waiting`` journal row (applied, not yet visible) is closed as ``done`` by the first later
plan of its stage that no longer needs the action; rows still planned, and other stages', stay."""

from __future__ import annotations

from pathlib import Path

from controller.store.db import Store


def _row(store: Store, digest: str, stage: str, action: str, state: str) -> None:
    store.journal_begin("run-1", "rel", stage, digest, action, action)
    store.journal_end(digest, action, state, "applied; pickup pending")


def test_waiting_rows_settle_when_a_later_plan_no_longer_needs_them(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    _row(store, "d1", "dev", "Dag/dag_a__dev/update", "waiting")
    _row(store, "d1", "dev", "Topic/t/update", "waiting")
    _row(store, "d1", "dev", "Table/x/create", "done")
    _row(store, "d2", "prod", "Dag/dag_a__prod/update", "waiting")

    assert store.journal_settle("rel", "dev", {"Topic/t/update"}) == 1

    states = {(r["stage"], r["action_id"]): (r["state"], r["message"]) for r in store.journal_rows("rel")}
    assert states[("dev", "Dag/dag_a__dev/update")] == ("done", "applied; seen in place by a later pass")
    assert states[("dev", "Topic/t/update")][0] == "waiting"  # the new plan still needs it
    assert states[("dev", "Table/x/create")] == ("done", "applied; pickup pending")
    assert states[("prod", "Dag/dag_a__prod/update")][0] == "waiting"  # another stage
    assert store.journal_settle("rel", "dev", {"Topic/t/update"}) == 0  # idempotent


def test_nothing_to_settle_is_one_read_without_a_fenced_write(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    _row(store, "d1", "dev", "Topic/t/update", "waiting")
    asked: list[bool] = []
    real = store.tx

    def tx(fenced: bool = False):  # type: ignore[no-untyped-def]
        asked.append(fenced)
        return real(fenced)

    store.tx = tx  # type: ignore[method-assign]
    assert store.journal_settle("rel", "dev", {"Topic/t/update"}) == 0  # still planned
    assert store.journal_settle("rel", "prod", set()) == 0  # no row at all
    assert asked == [False, False]  # every converged pass: no write transaction
    assert store.journal_settle("rel", "dev", set()) == 1
    assert asked[2:] == [False, True]
