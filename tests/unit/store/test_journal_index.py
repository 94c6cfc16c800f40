"""The journal's (release, stage, state) index: on a new store, and added to a store created
before it (``metadata.create_all`` adds no index to an existing table)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from controller.store.db import Store

INDEX = "ix_journal_release_stage_state"


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='journal'")}


def test_a_new_store_has_the_index_and_settling_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(f"sqlite:///{path}")
    assert INDEX in _indexes(path)
    with sqlite3.connect(path) as c:
        plan = " ".join(
            str(r[-1])
            for r in c.execute(
                "EXPLAIN QUERY PLAN SELECT action_id FROM journal WHERE release=? AND stage=? AND state=?",
                ("r", "dev", "waiting"),
            )
        )
    assert INDEX in plan, plan
    assert store.journal_settle("r", "dev", set()) == 0


def test_an_older_store_gains_the_index_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as c:
        c.execute(f"DROP INDEX {INDEX}")
    assert INDEX not in _indexes(path)
    Store(f"sqlite:///{path}")
    assert INDEX in _indexes(path)
