"""The audit ledger's hash chain: verify passes, and names the first altered record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from controller.audit.ledger import AuditRecord, Ledger
from controller.audit.lineage import OpenLineageSink
from controller.store.db import Store, audit

T = datetime(2026, 11, 26, tzinfo=UTC)


def rec(i: int) -> AuditRecord:
    return AuditRecord(
        run_id=f"r{i}",
        kind="apply",
        release="host-metrics",
        version="1.0.0",
        stage="dev",
        outcome="succeeded",
        started_at=T,
        finished_at=T,
        lineage={"inputs": ["kafka:dev.t"], "outputs": ["hive:dev_db.t"]},
    )


def test_chain_verifies_and_detects_tampering(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    ledger = Ledger(store)
    hashes = [ledger.append(rec(i)) for i in range(3)]
    assert len(set(hashes)) == 3
    assert ledger.verify() == (True, "3 record(s), chain intact")
    recs = ledger.records()
    assert [r["prev_hash"] for r in recs[1:]] == hashes[:2]
    # alter the second record's outcome directly in the database
    raw = json.loads(store.audit_rows()[1]["record"])
    raw["outcome"] = "failed"
    with store.tx() as c:
        c.execute(update(audit).where(audit.c.seq == 2).values(record=json.dumps(raw)))
    ok, msg = ledger.verify()
    assert not ok
    assert msg.startswith("record #2 (")
    assert msg.endswith("content does not match its hash")


def test_openlineage_events_written(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    path = tmp_path / "ol.jsonl"
    Ledger(store, [OpenLineageSink(path)]).append(rec(1))
    event = json.loads(path.read_text().splitlines()[0])
    assert event["eventType"] == "COMPLETE"
    assert event["job"] == {"facets": {}, "name": "host-metrics.dev.apply", "namespace": "pipectl"}
    assert event["inputs"][0]["name"] == "dev.t" and event["outputs"][0]["namespace"] == "hive://pipectl"


def test_backup_and_restore_keep_the_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store(url)
    Ledger(store).append(rec(1))
    store.backup(tmp_path / "b.db")
    store.close()
    (tmp_path / "s.db").unlink()
    Store.restore(tmp_path / "b.db", url)
    assert Ledger(Store(url)).verify() == (True, "1 record(s), chain intact")
