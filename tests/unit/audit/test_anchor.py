"""Signed anchors: signatures, keys, the anchor file shared by several stores, the Kafka copy, and
the canonical JSON the chain hashes."""

from __future__ import annotations

import json
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.audit.anchor import Anchors, Head, ledger_id
from controller.audit.chain import canonical, jsonable, ts_text
from controller.audit.ledger import AuditRecord, Ledger
from controller.store.db import Store

T = datetime(2026, 11, 26, tzinfo=UTC)


def rec(i: int) -> AuditRecord:
    return AuditRecord(run_id=f"r{i}", kind="apply", release="host-metrics", outcome="succeeded",
                       started_at=T, finished_at=T)


def filled(url: str, n: int) -> Ledger:
    ledger = Ledger(Store(url))
    for i in range(n):
        ledger.append(rec(i))
    return ledger


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_the_key_is_created_once_with_mode_0600(url: str, tmp_path: Path) -> None:
    anchors = [Anchors.for_url(url) for _ in range(8)]
    threads = [threading.Thread(target=a.sign, args=(Head(1, "a" * 64, 1),)) for a in anchors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    key = tmp_path / "audit-anchor.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    lines = [json.loads(x) for x in (tmp_path / "audit-anchors.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and len({x["key"] for x in lines}) == 1  # every racer signed with the winner's key
    assert all(a.seq == 1 for a in Anchors.for_url(url).read()[0])


def test_an_edited_anchor_line_fails(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 3)
    path = tmp_path / "audit-anchors.jsonl"
    lines = path.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["count"] = 1
    lines[1] = json.dumps(forged)
    path.write_text("\n".join(lines) + "\n")
    ok, msg = ledger.verify()
    assert not ok
    assert msg.startswith(f"{path}:2: bad signature on the anchor of #2 ") and "edited or forged" in msg


def test_anchors_signed_by_another_key_fail(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 2)
    other = tmp_path / "other.key"
    Anchors(other, tmp_path / "scratch.jsonl", "x").sign(Head(1, "b" * 64, 1))  # makes the other key
    ok, msg = Ledger(Store(url), anchors=Anchors.for_url(url, key_path=other)).verify()
    assert not ok and ":1: bad signature" in msg and f"the anchor key {other} is " in msg
    assert ledger.verify()[0]


def test_anchors_without_their_key_fail(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 1)
    (tmp_path / "audit-anchor.key").unlink()
    ok, msg = ledger.verify()
    assert not ok and msg.endswith("audit-anchor.key is missing")


def test_a_garbled_line_fails(url: str, tmp_path: Path) -> None:
    ledger = filled(url, 1)
    with (tmp_path / "audit-anchors.jsonl").open("a") as f:
        f.write("{not json\n")
    ok, msg = ledger.verify()
    assert not ok and msg.endswith(":2: not a signed anchor line")


def test_one_anchor_file_serves_several_stores(tmp_path: Path) -> None:
    a = filled(f"sqlite:///{tmp_path / 'a.db'}", 3)
    b = filled(f"sqlite:///{tmp_path / 'b.db'}", 1)
    assert a.verify()[0] and b.verify()[0]
    assert a.anchors.file == b.anchors.file
    assert [x.seq for x in b.anchors.read()[0]] == [1]


def test_paths_come_from_the_environment(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_ANCHOR_KEY", str(tmp_path / "keys" / "k"))
    monkeypatch.setenv("PIPECTL_ANCHORS", str(tmp_path / "elsewhere" / "anchors.jsonl"))
    filled(url, 1)
    assert (tmp_path / "keys" / "k").exists() and (tmp_path / "elsewhere" / "anchors.jsonl").exists()
    assert not (tmp_path / "audit-anchors.jsonl").exists()


def test_ledger_ids_carry_no_credentials() -> None:
    assert ledger_id("sqlite:////var/lib/pipectl/state.db") == "sqlite:state.db"
    pg = "postgresql+psycopg://pipectl:s3cret@db.example:5432/pipectl?options=-csearch_path%3Dp"
    assert ledger_id(pg) == "postgresql+psycopg://db.example:5432/pipectl?options=-csearch_path%3Dp"


def test_each_anchor_is_published_and_a_publish_failure_keeps_the_record(url: str, tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    anchors = Anchors.for_url(url)
    anchors.publish = lambda ledger, line: sent.append((ledger, line))
    ledger = Ledger(Store(url), anchors=anchors)
    ledger.append(rec(1))
    assert sent[0][0] == "sqlite:state.db"
    assert json.loads(sent[0][1])["seq"] == 1

    def down(_ledger: str, _line: bytes) -> None:
        raise OSError("broker down")

    anchors.publish = down
    ledger.append(rec(2))
    ok, msg = ledger.verify()
    assert ok and "signed anchor #2" in msg  # the file anchor was written before the publish


def test_canonical_json_is_rfc8785() -> None:
    assert canonical({"b": [1.0, 2.5, "é"], "a": None, "c": {"z": 1, "y": True}}) == (
        '{"a":null,"b":[1,2.5,"é"],"c":{"y":true,"z":1}}'
    )
    assert jsonable({"nan": float("nan"), "inf": float("-inf"), "big": 2**53, "t": (1, 2)}) == {
        "nan": "NaN", "inf": "-Infinity", "big": str(2**53), "t": [1, 2]
    }
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    assert ts_text(naive) == ts_text(naive.replace(tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"


def test_a_kafka_outage_pauses_publishing(monkeypatch: pytest.MonkeyPatch) -> None:
    import controller.adapters.kafka as kafka
    from controller.audit.anchor import AnchorError, kafka_publisher

    produced: list[bytes] = []

    class Down:
        def produce(self, topic: str, key: bytes, value: bytes, on_delivery: object) -> None:
            produced.append(value)

        def flush(self, timeout: float) -> int:
            return 1  # not delivered

    monkeypatch.setattr(kafka, "event_producer", lambda bootstrap, topic: Down())
    publish = kafka_publisher("127.0.0.1:9/anchors", pause=60.0)
    with pytest.raises(AnchorError, match="not delivered to Kafka topic anchors"):
        publish("sqlite:state.db", b'{"seq":1}\n')
    publish("sqlite:state.db", b'{"seq":2}\n')  # within the pause: not even tried
    assert produced == [b'{"seq":1}']
