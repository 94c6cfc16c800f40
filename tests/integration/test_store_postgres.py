"""The state store on PostgreSQL (the HA option): the same interface as SQLite, against the local
stack's real PostgreSQL server, in a throwaway schema of the metastore's database."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete

from controller.audit.anchor import Anchors
from controller.audit.ledger import AuditRecord, Ledger
from controller.store.db import Store
from controller.store.tables import audit


def test_store_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url)
    store.put_status("host-metrics", {"version": "1.0.0", "stages": {"dev": {}, "staging": {}}})
    store.put_status("host-metrics", {"version": "1.1.0", "stages": {"dev": {}, "staging": {}}})
    assert store.get_status("host-metrics") == {"version": "1.1.0", "stages": {"dev": {}, "staging": {}}}
    assert list(store.get_status("host-metrics")["stages"]) == ["dev", "staging"]  # rollout order kept

    store.journal_begin("run1", "host-metrics", "dev", "intent", "Topic/dev.t/create", "{}")
    assert store.journal_state("intent", "Topic/dev.t/create") == "started"
    store.journal_end("intent", "Topic/dev.t/create", "done")
    assert store.journal_state("intent", "Topic/dev.t/create") == "done"

    rev = "sha256:" + "a" * 64
    assert store.approve("host-metrics", "prod", "1.1.0", "alice", rev) is True
    assert store.approve("host-metrics", "prod", "1.1.0", "bob", rev) is False
    assert store.approval("host-metrics", "prod", "1.1.0", rev)["approver"] == "alice"  # type: ignore[index]
    assert store.approval("host-metrics", "prod", "1.1.0", "sha256:" + "b" * 64) is None

    t = datetime.now(UTC)
    ledger = Ledger(store, anchors=anchors_in(tmp_path, pg_url))
    for i in range(3):
        ledger.append(
            AuditRecord(
                run_id=f"r{i}",
                kind="apply",
                release="host-metrics",
                outcome="succeeded",
                started_at=t,
                finished_at=t,
            )
        )
    ok, msg = ledger.verify()
    assert ok and msg.startswith("3 record(s), chain intact; head #3 ") and "signed anchor #3" in msg, msg
    with store.tx() as c:  # the newest record removed: the signed anchor says there were 3
        c.execute(delete(audit).where(audit.c.seq == 3))
    ok, msg = ledger.verify()
    assert not ok and "the ledger has 2 record(s) (head #2) but the anchor signed" in msg, msg
    day = 1_200_000 * 86_400  # a partition of a day at the seed's peak: beyond 32 bits
    store.backfill_put("host-metrics", "prod", "2026-03-01", version="1.0.0", run_id="r", status="done",
                       attempts=1, rows=day)
    assert store.backfill_rows("host-metrics", "prod")[0]["rows"] == day
    store.kv_put("segments/host-metrics/dev", "[]")
    assert store.kv_prefix("segments/") == {"segments/host-metrics/dev": "[]"}
    store.kv_put("rollout/host-metrics/dev", "{}")
    store.preload_kv(("rollout/", "history/"))  # one statement on PostgreSQL too (store.kvcache)
    assert store.kv_cache.get("rollout/host-metrics/dev") == (True, "{}")
    assert store.kv_cache.get("history/host-metrics") == (True, None)
    assert store.kv_cache.get("segments/host-metrics/dev") == (False, None)  # not preloaded: the store
    store.close()


def anchors_in(tmp_path: Path, url: str) -> Anchors:
    return Anchors.for_url(url, tmp_path / "audit-anchor.key", tmp_path / "audit-anchors.jsonl")


APPENDS = 10


def _append_many(url: str, anchor_dir: str, who: int) -> None:
    store = Store(url)
    ledger = Ledger(store, anchors=anchors_in(Path(anchor_dir), url))
    t = datetime.now(UTC)
    for i in range(APPENDS):
        ledger.append(AuditRecord(run_id=f"w{who}-{i}", kind="apply", release=f"r{who}", outcome="succeeded",
                                  started_at=t, finished_at=t))
    store.close()


def test_concurrent_appends_on_postgresql_never_fork(pg_url: str, tmp_path: Path) -> None:
    """8 threads and 8 processes append at once (the controller's workers, a CLI approve): one chain."""
    Store(pg_url).close()
    errors: list[BaseException] = []

    def run(who: int) -> None:
        try:
            _append_many(pg_url, str(tmp_path), who)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    procs = [multiprocessing.get_context("spawn").Process(target=_append_many, args=(pg_url, str(tmp_path), 8 + w))
             for w in range(8)]
    for x in [*threads, *procs]:
        x.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(120)
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0] * 8
    store = Store(pg_url)
    ledger = Ledger(store, anchors=anchors_in(tmp_path, pg_url))
    ok, msg = ledger.verify()
    assert ok, msg
    rows = store.audit_rows()
    assert len(rows) == 16 * APPENDS and msg.startswith(f"{16 * APPENDS} record(s), chain intact")
    assert len({r["prev_hash"] for r in rows}) == len(rows)
    store.close()
