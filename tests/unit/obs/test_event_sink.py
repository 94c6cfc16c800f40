"""Event sink: the envelope, line-atomic JSONL appends, the Kafka producer seam, best-effort fan-out."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.obs import metrics
from controller.obs.events import (
    EVENT_COLUMNS,
    EventType,
    FanoutEventSink,
    JsonlEventSink,
    KafkaEventSink,
    hive_events_ddl,
    make_event,
    presto_events_ddl,
    spark_events_ddl,
)


def test_make_event_builds_the_flat_envelope() -> None:
    ev = make_event(
        EventType.TRANSITION,
        release="host-metrics",
        stage="prod",
        version="1.4.0",
        phase="Verifying",
        run_id="r1",
        detail={"from": "Progressing", "to": "Verifying", "at": datetime(2024, 6, 1, tzinfo=UTC)},
        ts=datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC),
    )
    assert tuple(ev) == EVENT_COLUMNS
    assert ev["ts"] == "2024-06-01T12:00:00.000Z"
    assert ev["event_type"] == "transition"
    assert json.loads(ev["detail"]) == {
        "at": "2024-06-01T00:00:00+00:00",
        "from": "Progressing",
        "to": "Verifying",
    }


def test_make_event_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", "af-secret-1")
    ev = make_event("audit", message="login af-secret-1", detail={"password": "x", "url": "http://a:b@h/"})
    assert "af-secret-1" not in json.dumps(ev)
    assert json.loads(ev["detail"])["password"] == "[REDACTED]"


def test_jsonl_sink_appends_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "events" / "events.jsonl"
    with JsonlEventSink(path) as sink:
        sink.emit(make_event("action", release="r", message="two\nlines"))
        sink.emit(make_event("gate", release="r"))
    with JsonlEventSink(path) as again:  # reopening appends
        again.emit(make_event("rollback", release="r"))

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event_type"] for r in rows] == ["action", "gate", "rollback"]
    assert rows[0]["message"] == "two\nlines"


def test_closed_jsonl_sink_refuses(tmp_path: Path) -> None:
    sink = JsonlEventSink(tmp_path / "e.jsonl")
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink.emit({"event_type": "x"})


def _writer(path: str, n: int, tag: str) -> None:
    sink = JsonlEventSink(path)
    for i in range(n):
        sink.emit({"event_type": "action", "run_id": tag, "i": i, "pad": tag * 2000})
    sink.close()


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), 200, tag)) for tag in "abcd"]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 800
    for tag in "abcd":
        assert [r["i"] for r in rows if r["run_id"] == tag] == list(range(200))


class FakeProducer:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes]] = []
        self.polls = 0
        self.flushed = False

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        # confluent_kafka's positional order is (topic, value, key): the sink must use keywords.
        assert value is not None
        self.messages.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        self.flushed = True
        return 0


def test_kafka_sink_produces_keyed_by_release() -> None:
    producer = FakeProducer()
    sink = KafkaEventSink(producer, "pipectl.events")
    sink.emit(make_event("audit", release="host-metrics"))
    sink.emit(make_event("controller"))
    sink.close()

    (topic, key, value), (_, key2, _) = producer.messages
    assert topic == "pipectl.events" and key == b"host-metrics" and key2 is None
    assert json.loads(value)["event_type"] == "audit" and not value.endswith(b"\n")
    assert producer.polls == 2 and producer.flushed


class Broken:
    def emit(self, event: Any) -> None:
        raise OSError("disk full")


def test_fanout_counts_and_survives_a_failing_sink(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    before = metrics.REGISTRY.get_sample_value("pipectl_events_dropped_total", {"sink": "kafka"}) or 0
    fan = FanoutEventSink({"kafka": Broken(), "jsonl": JsonlEventSink(path)})
    fan.emit(make_event("action", release="r"))
    fan.close()

    assert len(path.read_text().splitlines()) == 1
    assert metrics.REGISTRY.get_sample_value("pipectl_events_dropped_total", {"sink": "kafka"}) == before + 1


def test_table_ddl_covers_every_column() -> None:
    hive = hive_events_ddl("hdfs:///ops/pipectl/events", database="ops")
    assert hive.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `ops`.`pipectl_events`")
    assert (
        "org.apache.hive.hcatalog.data.JsonSerDe" in hive and "LOCATION 'hdfs:///ops/pipectl/events'" in hive
    )
    spark = spark_events_ddl("/var/lib/pipectl/events")
    for col in EVENT_COLUMNS:
        assert f"`{col}` STRING" in hive and f"`{col}` STRING" in spark
    assert "USING json" in spark
    presto = presto_events_ddl("hdfs:///ops/pipectl/events")
    assert presto.startswith(
        "CREATE TABLE IF NOT EXISTS hive.ops.pipectl_events (ts varchar, event_type varchar"
    )
    assert "format = 'JSON', external_location = 'hdfs:///ops/pipectl/events'" in presto
