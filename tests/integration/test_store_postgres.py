"""The state store on PostgreSQL (the HA option): the same interface as SQLite, against the local
stack's real PostgreSQL server, in a throwaway schema of the metastore's database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from controller.audit.ledger import AuditRecord, Ledger
from controller.store.db import Store


def _pg_login(stack: dict[str, Any]) -> tuple[str, str, int]:
    conf = (Path(stack["stack_dir"]) / "metastore" / "conf" / "hive-site.xml").read_text()
    user = re.search(r"ConnectionUserName</name><value>([^<]+)<", conf)
    password = re.search(r"ConnectionPassword</name><value>([^<]+)<", conf)
    assert user and password
    return user.group(1), password.group(1), int(stack["components"]["postgres"]["port"])


@pytest.fixture
def pg_url(stack: dict[str, Any], unique_name: str) -> Iterator[str]:
    user, password, port = _pg_login(stack)
    schema = f"pipectl_{unique_name}"
    dsn = f"host=127.0.0.1 port={port} dbname=metastore user={user} password={password}"
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    yield (
        f"postgresql+psycopg://{quote(user)}:{quote(password)}@127.0.0.1:{port}/metastore"
        f"?options=-csearch_path%3D{schema}"
    )
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_store_on_postgresql(pg_url: str) -> None:
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
    ledger = Ledger(store)
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
    assert ledger.verify() == (True, "3 record(s), chain intact")
    day = 1_200_000 * 86_400  # a partition of a day at the seed's peak: beyond 32 bits
    store.backfill_put("host-metrics", "prod", "2026-03-01", version="1.0.0", run_id="r", status="done",
                       attempts=1, rows=day)
    assert store.backfill_rows("host-metrics", "prod")[0]["rows"] == day
    store.kv_put("segments/host-metrics/dev", "[]")
    assert store.kv_prefix("segments/") == {"segments/host-metrics/dev": "[]"}
    store.close()
