"""The operational event stream (pipectl's Scuba-style view): one flat JSON object per event.

Every audit record and every state transition is also emitted here, to a JSON-lines file by
default (``JsonlEventSink``) and to a Kafka topic when configured (``KafkaEventSink``). The state
store and the audit ledger stay the source of truth; this stream is for slicing operations data
later — a Presto, Hive or Spark table over the files or the topic's landing directory
(:func:`presto_events_ddl`, :func:`hive_events_ddl`, :func:`spark_events_ddl`).

An event is the envelope built by :func:`make_event`: flat string columns that every event has
(``ts``, ``event_type``, ``release``, ``stage``, ``version``, ``phase``, ``run_id``,
``git_commit``, ``instance``, ``reason``, ``message``) and ``detail``, the rest as a JSON *string*.
Keeping ``detail`` a string gives the table one stable schema whatever the event carries; query it
with ``json_extract_scalar`` (Presto) or ``get_json_object`` (Hive, Spark).

confluent_kafka may only be imported by ``controller.adapters.kafka`` (import-linter), so
``KafkaEventSink`` takes any producer with ``produce(topic, key=…, value=…)``: ``wiring.py`` passes
a ``confluent_kafka.Producer`` made by the Kafka adapter.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from controller.obs import metrics
from controller.obs.logging import get_logger, redact

__all__ = [
    "EVENT_COLUMNS",
    "EventProducer",
    "EventSink",
    "EventType",
    "FanoutEventSink",
    "JsonlEventSink",
    "KafkaEventSink",
    "NullEventSink",
    "encode_event",
    "hive_events_ddl",
    "make_event",
    "presto_events_ddl",
    "spark_events_ddl",
]

_log = get_logger(__name__)


class EventType(StrEnum):
    AUDIT = "audit"
    """An audit ledger record (detail: the whole record)."""
    TRANSITION = "transition"
    """A release changed phase at a stage (detail: from/to phase)."""
    ACTION = "action"
    """A plan action ran (detail: action id, kind, resource, result)."""
    GATE = "gate"
    """A gate was evaluated (detail: verdict and evidence)."""
    ROLLBACK = "rollback"
    """A stage was rolled back (detail: from/to version, trigger)."""
    PROMOTION = "promotion"
    """A version passed its gates at a stage and became its known good (detail: from/to version)."""
    CONTROLLER = "controller"
    """The controller started, stopped, gained or lost leadership."""


EVENT_COLUMNS = (
    "ts",
    "event_type",
    "release",
    "stage",
    "version",
    "phase",
    "run_id",
    "git_commit",
    "instance",
    "reason",
    "message",
    "detail",
)
"""The envelope's columns, in table order. All strings (or null)."""


class EventSink(Protocol):
    """Where operational events go. ``emit`` may raise; wrap sinks in ``FanoutEventSink``."""

    def emit(self, event: Mapping[str, Any]) -> None: ...


def make_event(
    event_type: EventType | str,
    *,
    release: str | None = None,
    stage: str | None = None,
    version: str | None = None,
    phase: str | None = None,
    run_id: str | None = None,
    git_commit: str | None = None,
    instance: str | None = None,
    reason: str | None = None,
    message: str | None = None,
    detail: Mapping[str, Any] | None = None,
    ts: datetime | None = None,
) -> dict[str, Any]:
    """Build the event envelope; secrets in ``message`` and ``detail`` are redacted as in the logs.

    ``ts`` is UTC ISO 8601 with milliseconds and a ``Z``: fixed width, so it sorts as text.
    """
    when = (ts or datetime.now(UTC)).astimezone(UTC)
    return {
        "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event_type": str(event_type),
        "release": release,
        "stage": stage,
        "version": version,
        "phase": phase,
        "run_id": run_id,
        "git_commit": git_commit,
        "instance": instance,
        "reason": reason,
        "message": redact(message) if message is not None else None,
        "detail": json.dumps(redact(dict(detail or {})), sort_keys=True, separators=(",", ":"), default=str),
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One JSON object and a newline (JSON escapes any newline inside values)."""
    return (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()


class NullEventSink:
    """Drops every event (event stream disabled)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        return None


class JsonlEventSink:
    """Appends one JSON object per line to ``path``.

    The file is opened with ``O_APPEND`` and each event is a single ``write``, so lines from
    several writers (two controller processes during a hand-over, a ``pipectl`` CLI) do not
    interleave. No fsync: the ledger in the state store is the durable record.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()

    def emit(self, event: Mapping[str, Any]) -> None:
        data = encode_event(event)
        with self._lock:
            if self._fd is None:
                raise ValueError(f"event sink {self.path} is closed")
            written = os.write(self._fd, data)
            # A short write on a regular file means a full disk or a signal; finish the line
            # rather than leave half an object in the file.
            while written < len(data):
                written += os.write(self._fd, data[written:])

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventProducer(Protocol):
    """The part of a Kafka producer the event sink uses (``confluent_kafka.Producer`` fits)."""

    def produce(self, topic: str, *, key: bytes | None, value: bytes) -> None: ...


class KafkaEventSink:
    """Produces each event to ``topic``, keyed by release so a release's events stay in order."""

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def emit(self, event: Mapping[str, Any]) -> None:
        release = event.get("release")
        key = str(release).encode() if release else None
        self.producer.produce(self.topic, key=key, value=encode_event(event)[:-1])
        # confluent_kafka only runs delivery callbacks and frees its queue inside poll();
        # without it a long-running producer eventually raises BufferError.
        poll = getattr(self.producer, "poll", None)
        if callable(poll):
            poll(0)

    def close(self, timeout: float = 10.0) -> None:
        flush = getattr(self.producer, "flush", None)
        if callable(flush):
            flush(timeout)


class FanoutEventSink:
    """Emits to every named sink; a failing sink is logged and counted, never raised.

    The event stream is a view, not the record: losing an event must not fail a reconcile pass.
    Failures show as ``pipectl_events_dropped_total{sink}``.
    """

    def __init__(self, sinks: Mapping[str, EventSink]) -> None:
        self.sinks = dict(sinks)

    def emit(self, event: Mapping[str, Any]) -> None:
        for name, sink in self.sinks.items():
            try:
                sink.emit(event)
            except Exception as e:
                metrics.record_event_dropped(name)
                _log.warning("event_dropped", sink=name, event_type=event.get("event_type"), error=str(e))

    def close(self) -> None:
        for sink in self.sinks.values():
            close = getattr(sink, "close", None)
            if callable(close):
                close()


def presto_events_ddl(
    location: str, table: str = "pipectl_events", schema: str = "ops", catalog: str = "hive"
) -> str:
    """Presto: an external Hive-connector table over a directory of event JSON lines.

    ``location`` is a directory holding only event files (``file:///…``, ``hdfs://…``, ``s3a://…``).
    The metastore records it with the HCatalog JSON SerDe, so Hive 3 reads it too. Example::

        -- every prod rollback this week, newest first
        SELECT ts, release, version, json_extract_scalar(detail, '$.trigger') AS trigger
        FROM hive.ops.pipectl_events
        WHERE event_type = 'rollback' AND stage = 'prod' AND ts >= '2024-06-03'
        ORDER BY ts DESC
    """
    columns = ", ".join(f"{c} varchar" for c in EVENT_COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {catalog}.{schema}.{table} ({columns}) "
        f"WITH (format = 'JSON', external_location = '{location}')"
    )


def hive_events_ddl(location: str, table: str = "pipectl_events", database: str | None = None) -> str:
    """Hive: ``CREATE EXTERNAL TABLE`` over a directory of event JSON lines.

    Needs ``org.apache.hive.hcatalog.data.JsonSerDe`` on the server's classpath: Hive 3 ships it,
    Hive 2 needs ``ADD JAR hive-hcatalog-core-<v>.jar``; Spark's Thrift Server has neither — use
    :func:`spark_events_ddl` there. Example::

        -- which releases spend longest in Verifying
        SELECT release, count(*) FROM ops.pipectl_events
        WHERE event_type = 'transition' AND phase = 'Verifying' GROUP BY release;
    """
    name = f"`{database}`.`{table}`" if database else f"`{table}`"
    columns = ",\n".join(f"  `{c}` STRING" for c in EVENT_COLUMNS)
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{columns}\n)\n"
        "ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'\n"
        "STORED AS TEXTFILE\n"
        f"LOCATION '{location}'\n"
        "TBLPROPERTIES ('comment'='pipectl operational events; detail is a JSON string')"
    )


def spark_events_ddl(path: str, table: str = "pipectl_events") -> str:
    """Spark SQL (and the Spark Thrift Server): a JSON data-source table, schema pinned.

    Pinning the columns skips schema inference and keeps ``detail`` a string; query it with
    ``get_json_object(detail, '$.trigger')``.
    """
    columns = ", ".join(f"`{c}` STRING" for c in EVENT_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS `{table}` ({columns}) USING json OPTIONS (path '{path}')"
