"""Fencing in the store's writes (``controller.store.fencing``), on SQLite: a journal (status,
known-good, key/value) write carrying a fencing token commits only while that token is the current
leader epoch; a stale one is refused with ``FencedOut`` and writes nothing; ``take_epoch`` (the Lease
elector's) increments the epoch; a fence guard (the Lease's renew deadline) refuses a write in the
same way. (The advisory lock itself: tests/integration/test_leader_pg.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.store.db import Store
from controller.store.fencing import (
    DEFAULT_LOCK,
    EpochTaker,
    FencedOut,
    LeaseLapsed,
    current_epoch,
    ensure_epoch_table,
    leader_epoch,
    lock_key,
    take_epoch,
)


def store_at_epoch(tmp_path: Path, epoch: int) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    ensure_epoch_table(store.engine)
    with store.tx() as c:
        c.execute(leader_epoch.delete())
        c.execute(leader_epoch.insert().values(name=DEFAULT_LOCK, epoch=epoch, holder="ctl-a",
                                               acquired_at=datetime.now(UTC)))
    return store


def test_a_current_token_writes_and_a_stale_one_is_refused(tmp_path: Path) -> None:
    store = store_at_epoch(tmp_path, 3)
    store.fencing_token = 3
    store.journal_begin("run1", "r", "dev", "intent", "Topic/dev.t/create", "{}")
    store.journal_end("intent", "Topic/dev.t/create", "done")
    assert store.journal_state("intent", "Topic/dev.t/create") == "done"

    with store.tx() as c:  # another controller took leadership: epoch 4
        c.execute(leader_epoch.update().values(epoch=4, holder="ctl-b"))
    with pytest.raises(FencedOut) as e:
        store.journal_begin("run2", "r", "dev", "intent", "Topic/dev.u/create", "{}")
    assert (e.value.token, e.value.current) == (3, 4)
    assert "fencing token 3 is not the current leader epoch 4" in str(e.value)
    with pytest.raises(FencedOut):
        store.journal_end("intent", "Topic/dev.t/create", "failed", "late")
    rows = store.journal_rows("r")
    assert [(r["action_id"], r["state"]) for r in rows] == [("Topic/dev.t/create", "done")]  # nothing written


def test_a_stale_token_cannot_write_status_known_good_or_records(tmp_path: Path) -> None:
    store = store_at_epoch(tmp_path, 3)
    store.fencing_token = 3
    store.put_status("r", {"version": "1.1.0"})
    store.journal_begin("run1", "r", "dev", "intent", "Topic/t/update", "{}")
    store.journal_end("intent", "Topic/t/update", "waiting")  # a settle would close it: a write
    with store.tx() as c:
        c.execute(leader_epoch.update().values(epoch=4))
    for write in (
        lambda: store.put_status("r", {"version": "0.9.0"}),
        lambda: store.delete_status("r"),
        lambda: store.set_known_good("r", "dev", "0.9.0", None, "{}"),
        lambda: store.kv_put("rollout/r/dev", "{}"),
        lambda: store.journal_settle("r", "dev", set()),
    ):
        with pytest.raises(FencedOut):
            write()
    assert store.get_status("r") == {"version": "1.1.0"}
    assert store.known_good("r", "dev") is None and store.kv_get("rollout/r/dev") is None
    store.add_event("r", "dev", "Normal", "Stopped", "events and run history are not fenced")
    assert store.recent_events("r")[-1]["reason"] == "Stopped"


def test_without_a_token_nothing_is_checked(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")  # file lock: no epoch table at all
    assert store.fencing_token is None
    store.journal_begin("run1", "r", "dev", "intent", "a", "{}")
    assert store.journal_state("intent", "a") == "started"


def test_a_token_without_an_epoch_row_is_refused(tmp_path: Path) -> None:
    store = store_at_epoch(tmp_path, 1)
    with store.tx() as c:
        c.execute(leader_epoch.delete())
    store.fencing_token = 1
    with pytest.raises(FencedOut, match="not the current leader no epoch"):
        store.journal_begin("run1", "r", "dev", "intent", "a", "{}")
    assert store.journal_rows("r") == []


def test_lock_keys_are_positive_31_bit_and_differ_per_schema() -> None:
    a, b = lock_key("public", DEFAULT_LOCK), lock_key("pipectl_x", DEFAULT_LOCK)
    assert a != b and 0 <= a < 2**31 and 0 <= b < 2**31
    assert lock_key("public", DEFAULT_LOCK) == a


def test_take_epoch_starts_at_one_increments_and_fences_the_previous_token(tmp_path: Path) -> None:
    """What the Lease elector calls on each win (``EpochTaker``): the same row the advisory lock uses."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    take = EpochTaker(url)
    store = Store(url)
    assert take("pod-a") == 1
    with store.tx() as c:
        assert current_epoch(c) == 1
        assert c.execute(select(leader_epoch.c.holder)).scalar_one() == "pod-a"
    store.fencing_token = 1
    store.kv_put("k", "by pod-a")
    assert take_epoch(store.engine, "pod-b") == 2
    with pytest.raises(FencedOut, match="fencing token 1 is not the current leader epoch 2"):
        store.kv_put("k", "late")
    assert store.kv_get("k") == "by pod-a"
    with store.tx() as c:
        assert c.execute(select(leader_epoch.c.holder)).scalar_one() == "pod-b"


def test_a_fence_guard_runs_in_each_fenced_write_only(tmp_path: Path) -> None:
    store = store_at_epoch(tmp_path, 5)
    store.fencing_token = 5
    calls: list[str] = []

    def guard() -> None:
        calls.append("checked")
        if len(calls) > 1:
            raise LeaseLapsed(5, "ns/lease", "the Lease was last renewed 4.2s ago (renew deadline 4.0s)")

    store.fence_guard = guard
    store.journal_begin("run1", "r", "dev", "intent", "a", "{}")
    assert store.get_status("r") is None  # a read: not fenced, no check
    with pytest.raises(FencedOut, match=r"renew deadline 4\.0s\) \(Lease ns/lease\)"):
        store.journal_end("intent", "a", "done")
    assert calls == ["checked", "checked"] and store.journal_state("intent", "a") == "started"
