"""The audit anchors' off-host copy: with PIPECTL_ANCHOR_KAFKA set, every signed anchor line the
ledger appends to its file is also produced to the Kafka topic (keyed by ledger), against the local
stack's real broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from controller.audit.anchor import Anchors
from controller.audit.ledger import AuditRecord, Ledger
from controller.store.db import Store

BOOTSTRAP = "127.0.0.1:9092"


def test_anchors_are_produced_to_kafka(
    stack: dict[str, Any], unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"it{unique_name}.audit-anchors"
    monkeypatch.setenv("PIPECTL_ANCHOR_KAFKA", f"{BOOTSTRAP}/{topic}")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ledger = Ledger(Store(url), anchors=Anchors.for_url(url))
    t = datetime.now(UTC)
    for i in range(3):
        ledger.append(AuditRecord(run_id=f"r{i}", kind="apply", release="host-metrics", outcome="succeeded",
                                  started_at=t, finished_at=t))
    assert ledger.verify()[0]
    lines = (tmp_path / "audit-anchors.jsonl").read_text().splitlines()
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"it{unique_name}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        got: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                got.append((msg.key(), msg.value()))
    finally:
        consumer.close()
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept alive until the deletion is done
        for f in admin.delete_topics([topic]).values():
            f.result(timeout=30)
    assert [k for k, _ in got] == [b"sqlite:state.db"] * 3
    assert [v.decode() for _, v in got] == lines  # byte for byte the signed lines of the file
