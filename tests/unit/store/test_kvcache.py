"""The pass-wide read cache of controller-owned key/value rows (``store.kvcache``): one statement
per preload, the process's own writes seen at once, a write during the preload left to the store,
people's keys always read from the store (suspensions once per pass), and a failed preload falling back to per-key reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from controller.engine.controller import Controller
from controller.store.db import Store
from controller.store.destructive import DestructiveApprovals, Inventory
from controller.store.rollout import RolloutStore
from controller.store.suspend import set_suspended, suspension

OWNED = RolloutStore.OWNED_PREFIXES + Inventory.OWNED_PREFIXES
PASS = Controller.PRELOAD_PREFIXES


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'state.db'}")


class Statements:
    def __init__(self, store: Store) -> None:
        self.sql: list[str] = []
        event.listen(store.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(statement)

    def reads_of_kv(self) -> int:
        return sum(1 for s in self.sql if s.lstrip().upper().startswith("SELECT") and "FROM kv" in s)


@pytest.fixture
def statements(store: Store) -> Iterator[Statements]:
    yield Statements(store)


def test_one_statement_per_preload_then_reads_from_memory(store: Store, statements: Statements) -> None:
    for i in range(50):
        store.kv_put(f"rollout/r{i}/dev", f"doc{i}")
        store.kv_put(f"history/r{i}", f"h{i}")
    store.kv_put("unrelated/x", "y")
    statements.sql.clear()
    store.preload_kv(OWNED)
    assert statements.reads_of_kv() == 1
    for i in range(50):
        assert store.kv_get(f"rollout/r{i}/dev") == f"doc{i}"
        assert store.kv_get(f"history/r{i}") == f"h{i}"
    assert store.kv_get("inventory/r0/dev") is None  # under an owned prefix and absent: no row
    assert statements.reads_of_kv() == 1
    assert store.kv_get("unrelated/x") == "y"  # not owned: read from the store
    assert statements.reads_of_kv() == 2


def test_the_process_own_write_is_seen_at_once(store: Store) -> None:
    store.preload_kv(OWNED)
    store.kv_put("rollout/r/dev", "v1")
    assert store.kv_get("rollout/r/dev") == "v1"
    store.kv_put("rollout/r/dev", "v2")
    assert store.kv_get("rollout/r/dev") == "v2"


def test_a_key_written_while_the_preload_reads_is_read_from_the_store(store: Store) -> None:
    store.kv_put("rollout/r/dev", "old")
    def racing(prefixes: tuple[str, ...]) -> dict[str, str]:
        rows = store.kv_prefix(*prefixes)  # the preload's statement saw "old" ...
        store.kv_put("rollout/r/dev", "new")  # ... and a pass writes before it is installed
        return rows

    store.kv_cache.load(OWNED, racing)
    assert store.kv_get("rollout/r/dev") == "new"


def test_keys_people_write_are_never_cached(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    controller, cli = Store(url), Store(url)  # the CLI writes from another process
    controller.preload_kv(PASS)
    assert DestructiveApprovals(controller).all("r", "dev") == []
    DestructiveApprovals(cli).record("r", "dev", "Topic/t/delete", "sha256:ab", "alice", None)
    assert [a.approver for a in DestructiveApprovals(controller).all("r", "dev")] == ["alice"]


def test_a_suspension_is_read_once_per_pass(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    controller, cli = Store(url), Store(url)
    controller.preload_kv(PASS)
    assert suspension(controller, "r") is None
    set_suspended(cli, "r", True, "alice", "incident")  # another process: seen from the next pass
    assert suspension(controller, "r") is None
    controller.preload_kv(PASS)
    held = suspension(controller, "r")
    assert held is not None and held["by"] == "alice"
    set_suspended(controller, "r", False, "bob")  # through this Store (the API): seen at once
    assert suspension(controller, "r") is None


def test_an_owned_key_another_writer_changes_is_seen_at_the_next_preload(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    a, b = Store(url), Store(url)
    a.preload_kv(OWNED)
    b.kv_put("history/r", "from-b")
    assert a.kv_get("history/r") is None  # the pass-wide view (only the leader writes these keys)
    a.preload_kv(OWNED)
    assert a.kv_get("history/r") == "from-b"


def test_a_failed_preload_falls_back_to_per_key_reads(store: Store, statements: Statements) -> None:
    store.kv_put("rollout/r/dev", "v1")
    store.preload_kv(OWNED)

    def broken(_prefixes: tuple[str, ...]) -> dict[str, str]:
        raise OSError("store down")

    with pytest.raises(OSError):
        store.kv_cache.load(OWNED, broken)
    statements.sql.clear()
    assert store.kv_get("rollout/r/dev") == "v1"
    assert statements.reads_of_kv() == 1
