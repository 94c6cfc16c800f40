"""What a pass reads once (``Store.preload_pass``, ``Store.kv_prefix``): every status and the
journal's waiting rows in one statement each, this process's writes seen at once, another
writer's from the next preload; prefix reads that SQLite answers from its key index, with the
same rows as ``LIKE``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from controller.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'state.db'}")


def _selects(store: Store, table: str) -> list[str]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    return seen


def test_statuses_are_read_once_per_pass_and_own_writes_seen_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    leader, other = Store(url), Store(url)
    for i in range(20):
        leader.put_status(f"r{i}", {"phase": "Succeeded", "n": i})
    reads = _selects(leader, "releases")
    leader.preload_pass()
    assert len(reads) == 1
    assert [leader.get_status(f"r{i}") for i in (0, 19)] == [{"phase": "Succeeded", "n": 0},
                                                             {"phase": "Succeeded", "n": 19}]
    assert leader.get_status("absent") is None
    assert len(reads) == 1
    leader.put_status("r0", {"phase": "Progressing"})
    assert leader.get_status("r0") == {"phase": "Progressing"}
    leader.delete_status("r1")
    assert leader.get_status("r1") is None
    other.put_status("r2", {"phase": "Failed"})  # not the leader's write: seen from the next pass
    assert leader.get_status("r2") == {"phase": "Succeeded", "n": 2}
    leader.preload_pass()
    assert leader.get_status("r2") == {"phase": "Failed"}


def test_without_a_preload_every_status_read_goes_to_the_store(store: Store) -> None:
    store.put_status("r", {"phase": "Succeeded"})
    reads = _selects(store, "releases")
    assert store.get_status("r") == {"phase": "Succeeded"}
    assert store.get_status("r") == {"phase": "Succeeded"}
    assert len(reads) == 2


def _waiting(store: Store, release: str, stage: str, action: str) -> None:
    store.journal_begin("run1", release, stage, f"plan-{action}", action, action)
    store.journal_end(f"plan-{action}", action, "waiting", "applied; the backend has not shown it yet")


def test_settle_answers_from_the_preload_until_a_journal_write(store: Store) -> None:
    _waiting(store, "r", "dev", "Dag/d/update")
    store.preload_pass()
    reads = _selects(store, "journal")
    assert store.journal_settle("r", "dev", {"Dag/d/update"}) == 0  # still planned: nothing to close
    assert store.journal_settle("q", "dev", set()) == 0  # no waiting rows at all
    assert reads == []
    assert store.journal_settle("r", "dev", set()) == 1  # not planned any more: closed, from the store
    assert store.journal_settle("r", "dev", set()) == 0  # the close dropped the cache: read again
    assert len(reads) >= 2
    _waiting(store, "q", "dev", "Topic/t/update")  # a write after the preload: read from the store
    assert store.journal_settle("q", "dev", set()) == 1


def test_a_journal_write_during_the_preload_keeps_its_result_out(store: Store) -> None:
    def racing() -> dict[tuple[str, str], frozenset[str]]:
        rows = store._waiting_rows()  # the preload's statement saw no waiting row ...
        _waiting(store, "r", "dev", "Dag/d/update")  # ... and a pass wrote one before it was kept
        return rows

    store.waiting_cache.load(racing)
    assert store.waiting_cache.get("r", "dev") is None
    assert store.journal_settle("r", "dev", set()) == 1


def test_the_end_of_a_sweep_drops_what_the_preloads_read(store: Store) -> None:
    """Between sweeps nothing preloaded is held (at 1,000 releases ~10 MiB of rollout documents):
    every read goes to the store, and sees what another writer wrote meanwhile."""
    store.put_status("r", {"phase": "Succeeded"})
    store.kv_put("rollout/r/dev", "v1")
    _waiting(store, "r", "dev", "Dag/d/update")
    store.preload_kv(["rollout/"])
    store.preload_pass()
    other = Store(store.url)
    other.put_status("r", {"phase": "Progressing"})
    other.kv_put("rollout/r/dev", "v2")
    assert store.get_status("r") == {"phase": "Succeeded"} and store.kv_get("rollout/r/dev") == "v1"
    store.end_pass()
    reads = _selects(store, "journal")
    assert store.get_status("r") == {"phase": "Progressing"} and store.kv_get("rollout/r/dev") == "v2"
    assert store.journal_settle("r", "dev", {"Dag/d/update"}) == 0 and len(reads) == 1


@pytest.mark.parametrize("prefix", ["rollout/r1/", "destructive/r/dev/", "a_b/", "x%/"])
def test_prefix_reads_use_the_key_index_and_match_like(store: Store, prefix: str) -> None:
    keys = ["rollout/r1/dev", "rollout/r1/prod", "rollout/r10/dev", "rollout/r1", "rollout/r10",
            "destructive/r/dev/ab", "destructive/r/devx/ab", "destructive/r/dev0", "a_b/1", "aXb/1",
            "x%/1", "xy/1", "rollout/r1/\U0010fffe"]
    for k in keys:
        store.kv_put(k, k)
    assert store.kv_prefix(prefix) == {k: k for k in keys if k.startswith(prefix)}
    with store.engine.connect() as c:
        from sqlalchemy import select

        from controller.store.tables import kv

        sql = select(kv.c.key).where(store._prefix_match(prefix)).compile(compile_kwargs={"literal_binds": True})
        plan = " ".join(str(r[-1]) for r in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "USING" in plan and "INDEX" in plan, plan  # a range of the key index, not a scan
