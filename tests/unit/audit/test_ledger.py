"""The audit ledger: the chain covers every column, appends are serialized, and the signed anchors
outside the store catch what a chain alone cannot (truncation, emptying, an older backup copied
into place); a restore made with ``record_restore`` verifies."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update

from controller.audit.chain import legacy_hash, row_hash
from controller.audit.ledger import AuditRecord, Ledger
from controller.audit.lineage import OpenLineageSink
from controller.store.db import Store
from controller.store.tables import audit

T = datetime(2026, 11, 26, tzinfo=UTC)


def rec(i: int, release: str = "host-metrics") -> AuditRecord:
    return AuditRecord(
        run_id=f"r{i}",
        kind="apply",
        release=release,
        version="1.0.0",
        stage="dev",
        outcome="succeeded",
        started_at=T,
        finished_at=T,
        lineage={"inputs": ["kafka:dev.t"], "outputs": ["hive:dev_db.t"]},
        gates=[{"name": "g", "type": "canary", "verdict": "pass", "evidence": {"p": float("nan"), "n": 2**60}}],
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


def filled(url: str, n: int) -> Ledger:
    ledger = Ledger(Store(url))
    for i in range(n):
        ledger.append(rec(i))
    return ledger


def test_chain_verifies_and_names_an_edited_record(url: str) -> None:
    ledger = filled(url, 3)
    ok, msg = ledger.verify()
    assert ok, msg
    assert msg.startswith("3 record(s), chain intact; head #3 ")
    assert "signed anchor #3 of " in msg
    recs = ledger.records()
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["gates"][0]["evidence"] == {"p": None, "n": str(2**60)}  # JCS cannot carry 2**60
    raw = json.loads(ledger.store.audit_rows()[1]["record"])
    raw["outcome"] = "failed"
    with ledger.store.tx() as c:
        c.execute(update(audit).where(audit.c.seq == 2).values(record=json.dumps(raw)))
    ok, msg = ledger.verify()
    assert not ok
    assert msg.startswith("record #2 (") and msg.endswith("content does not match its hash (a column or the record was edited)")


@pytest.mark.parametrize(
    ("column", "value"),
    [("release", "another-release"), ("kind", "approval"), ("ts", datetime(2020, 1, 1, tzinfo=UTC))],
)
def test_an_edited_column_fails(url: str, column: str, value: object) -> None:
    ledger = filled(url, 3)
    with ledger.store.tx() as c:
        c.execute(update(audit).where(audit.c.seq == 2).values({column: value}))
    assert ledger.records("host-metrics") != ledger.records() or column != "release"
    ok, msg = ledger.verify()
    assert not ok and msg.startswith("record #2 ("), msg


@pytest.mark.parametrize("n", [1, 2])
def test_truncating_the_last_records_fails(url: str, n: int) -> None:
    ledger = filled(url, 5)
    with ledger.store.tx() as c:
        c.execute(delete(audit).where(audit.c.seq > 5 - n))
    ok, msg = ledger.verify()
    assert not ok
    assert f"the ledger has {5 - n} record(s) (head #{5 - n}) but the anchor signed" in msg
    assert "says 5 (head #5 " in msg and "records were removed" in msg


def test_an_emptied_ledger_fails(url: str) -> None:
    ledger = filled(url, 4)
    with ledger.store.tx() as c:
        c.execute(delete(audit))
    ok, msg = ledger.verify()
    assert not ok
    assert msg.startswith("the ledger has 0 record(s) but the anchor signed ") and "says 4 (head #4 " in msg


def test_a_new_empty_ledger_verifies(url: str) -> None:
    assert Ledger(Store(url)).verify() == (True, "0 record(s), chain intact; no head; no anchor yet")


def test_records_without_any_anchor_fail(url: str, tmp_path: Path) -> None:
    filled(url, 2)
    (tmp_path / "state" / "audit-anchors.jsonl").unlink()
    ok, msg = Ledger(Store(url)).verify()
    assert not ok and msg.startswith("2 record(s) but no signed anchor for this ledger in ")


def _copy_db(src: str, dest: Path) -> None:
    """A file-level copy of a SQLite store (what `cp` of a backup does), WAL checkpointed first."""
    path = src.removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copyfile(path, dest)


def test_an_older_backup_copied_into_place_fails(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 2)
    backup = tmp_path / "old.db"
    ledger.store.backup(backup)
    for i in range(3):
        ledger.append(rec(10 + i))
    ledger.store.close()
    Store.restore(backup, url)  # the file copy, without recording it
    ok, msg = Ledger(Store(url)).verify()
    assert not ok
    assert "the ledger has 2 record(s) (head #2) but the anchor signed" in msg and "says 5 (head #5 " in msg


def test_rolled_back_then_appended_past_the_anchor_fails(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 3)
    backup = tmp_path / "old.db"
    _copy_db(url, backup)
    ledger.append(rec(3))
    ledger.store.close()
    Store.restore(backup, url)
    other = Ledger(Store(url))
    for i in range(3):  # written straight into the store: whoever does this has no anchor key
        other.store.audit_append(f"x{i}", T, "host-metrics", "apply", json.dumps({"record_id": f"x{i}"}), row_hash)
    ok, msg = other.verify()
    assert not ok
    assert msg.startswith("record #4: its hash differs from the signed anchor of "), msg


def test_a_recorded_restore_verifies(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 2)
    backup = tmp_path / "b.db"
    ledger.record_backup(backup, "alice")
    ledger.store.backup(backup)
    for i in range(3):
        ledger.append(rec(20 + i))
    previous = ledger.anchors.latest()
    assert previous is not None and previous.seq == 6
    ledger.store.close()
    Store.restore(backup, url)
    restored = Ledger(Store(url))
    restored.record_restore(backup, previous, "alice")
    ok, msg = restored.verify()
    assert ok, msg
    assert msg.startswith("4 record(s), chain intact; head #4 ") and "restored from a backup at #4" in msg
    last = restored.records()[-1]
    assert last["kind"] == "state-restore" and last["release"] == "(state)"
    assert last["details"]["previous_anchor"]["seq"] == 6
    assert last["details"]["restored_head"]["seq"] == 3
    assert f"restored from backup {backup} (head #3 " in last["message"]
    restored.append(rec(30))
    assert restored.verify()[0]
    # the same old backup copied into place again, this time without recording it
    restored.store.close()
    Store.restore(backup, url)
    ok, msg = Ledger(Store(url)).verify()
    assert not ok and "the ledger has 3 record(s) (head #3)" in msg


def test_a_restore_record_without_its_signed_anchor_fails(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 2)
    backup = tmp_path / "b.db"
    ledger.store.backup(backup)
    ledger.append(rec(5))
    previous = ledger.anchors.latest()
    ledger.store.close()
    Store.restore(backup, url)
    forger = Ledger(Store(url))
    forger.anchors.sign = lambda *a, **k: {}  # type: ignore[method-assign]  # no key: cannot sign
    forger.record_restore(backup, previous, "mallory")
    ok, msg = Ledger(Store(url)).verify()
    assert not ok and msg.startswith("record #3: its hash differs from the signed anchor of "), msg


def test_records_of_the_old_scheme_fail_by_name(url: str) -> None:
    store = Store(url)
    prev = "0" * 64
    with store.tx() as c:
        for i in (1, 2):
            text = json.dumps({"record_id": f"old{i}", "outcome": "succeeded"}, sort_keys=True)
            h = legacy_hash(prev, text)
            c.execute(insert(audit).values(seq=i, record_id=f"old{i}", ts=T, release="r", kind="apply",
                                           prev_hash=prev, hash=h, record=text))
            prev = h
    ok, msg = Ledger(store).verify()
    assert not ok
    assert msg.startswith("record #1 (old1): written by an older pipectl"), msg


def test_openlineage_events_written(url: str, tmp_path: Path) -> None:
    path = tmp_path / "ol.jsonl"
    Ledger(Store(url), [OpenLineageSink(path)]).append(rec(1))
    event = json.loads(path.read_text().splitlines()[0])
    assert event["eventType"] == "COMPLETE"
    assert event["job"] == {"facets": {}, "name": "host-metrics.dev.apply", "namespace": "pipectl"}
    assert event["inputs"][0]["name"] == "dev.t" and event["outputs"][0]["namespace"] == "hive://pipectl"


# --- concurrent appenders ----------------------------------------------------------------------

APPENDS = 12


def _append_many(url: str, who: int) -> None:
    ledger = Ledger(Store(url))
    for i in range(APPENDS):
        ledger.append(rec(who * 100 + i, release=f"r{who}"))
    ledger.store.close()


def _check_concurrent(url: str, writers: int) -> None:
    ledger = Ledger(Store(url))
    ok, msg = ledger.verify()
    assert ok, msg
    rows = ledger.store.audit_rows()
    assert len(rows) == writers * APPENDS
    assert len({r["prev_hash"] for r in rows}) == len(rows)  # no fork: every record has one successor
    assert {r["release"] for r in rows} == {f"r{w}" for w in range(writers)}
    assert ledger.anchors.latest().seq == writers * APPENDS  # type: ignore[union-attr]


def test_eight_threads_append_without_forking(url: str) -> None:
    Store(url).close()  # the schema exists, as it does for the controller and a CLI verb
    errors: list[BaseException] = []

    def run(who: int) -> None:
        try:
            _append_many(url, who)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _check_concurrent(url, 8)


def test_eight_processes_append_without_forking(url: str) -> None:
    Store(url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(url, w)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    _check_concurrent(url, 8)
