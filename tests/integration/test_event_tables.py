"""The operational event stream is queryable: events written by JsonlEventSink, read back through
the table DDL pipectl documents, on the stack's real Presto and Spark Thrift Server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.obs.events import JsonlEventSink, make_event, presto_events_ddl, spark_events_ddl


def write_events(directory: Path) -> None:
    with JsonlEventSink(directory / "events.jsonl") as sink:
        sink.emit(
            make_event(
                "rollback",
                release="host-metrics",
                stage="prod",
                version="1.4.0",
                run_id="r1",
                detail={"trigger": "gate freshness failed", "to_version": "1.3.2"},
            )
        )
        sink.emit(
            make_event("transition", release="host-metrics", stage="prod", phase="Verifying", message="a\nb")
        )


def test_presto_reads_the_events(tmp_path: Path, presto_conn: Callable[..., Any], unique_name: str) -> None:
    write_events(tmp_path)
    table = f"pipectl_events_{unique_name}"
    cur = presto_conn().cursor()
    cur.execute(presto_events_ddl(f"file://{tmp_path}", table=table, schema="default"))
    cur.fetchall()
    try:
        cur.execute(
            f"SELECT event_type, release, stage, phase, message, json_extract_scalar(detail, '$.trigger') "
            f"FROM hive.default.{table} ORDER BY ts"
        )
        rows = [tuple(r) for r in cur.fetchall()]
    finally:
        cur.execute(f"DROP TABLE hive.default.{table}")
        cur.fetchall()
    assert rows == [
        ("rollback", "host-metrics", "prod", None, None, "gate freshness failed"),
        ("transition", "host-metrics", "prod", "Verifying", "a\nb", None),
    ]
    assert (tmp_path / "events.jsonl").exists()  # external: dropping the table keeps the events


def test_spark_reads_the_events(tmp_path: Path, hive_conn: Callable[..., Any], unique_name: str) -> None:
    write_events(tmp_path)
    table = f"pipectl_events_{unique_name}"
    cur = hive_conn().cursor()
    cur.execute(spark_events_ddl(f"file://{tmp_path}", table=table))
    try:
        cur.execute(f"SELECT event_type, get_json_object(detail, '$.to_version') FROM {table} ORDER BY ts")
        rows = [tuple(r) for r in cur.fetchall()]
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    assert rows == [("rollback", "1.3.2"), ("transition", None)]
    assert (tmp_path / "events.jsonl").exists()
