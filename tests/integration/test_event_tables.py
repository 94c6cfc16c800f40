"""The operational event stream is queryable: events written by JsonlEventSink, read back through
the table DDL pipectl documents, on the stack's real Presto and Spark Thrift Server; and a running
controller's events on Kafka, read through Presto's Kafka connector with the runbook's queries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctlkit import ROOT, Ctl, drop_everything, free_port, init_repo, stage_env_yaml, stage_is, wait_for

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


# --- the live stream: a real controller's promotion, read back through Presto's Kafka connector ----

EVENTS_TOPIC = "pipectl.events"  # what the stack's kafka.ops.pipectl_events table maps


def _runbook_queries() -> list[str]:
    """The SQL block of docs/runbooks.md's "Querying the event stream", one statement each."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    section = text[text.index("## Querying the event stream"):]
    block = section[section.index("```sql") + len("```sql"):]
    block = block[: block.index("```")]
    return [q.strip() for q in block.split(";") if q.strip()]


def _two_stage_release(name: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - name: ev.input
      partitions: 1
      replicationFactor: 1
  tables:
    - name: ev.counts
      columns: [{{name: k, type: string}}, {{name: n, type: bigint}}]
  rollout:
    stages: [dev, staging]
    gates:
      - name: counts-readable
        type: dataQuality
        stages: [staging]
        query: SELECT count(*) FROM ev.counts
        expect: ">= 0"
"""


def test_promotion_events_through_presto_kafka(
    tmp_path: Path, stack: dict[str, Any], presto_conn: Callable[..., Any], unique_name: str
) -> None:
    uid, folder = unique_name, stack["airflow_dags_folder"]
    name = f"ev-{uid}"
    repo = init_repo(tmp_path, {
        "environments/dev.yaml": stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", folder),
        "environments/staging.yaml": stage_env_yaml("staging", f"it{uid}s.", f"it{uid}s_", folder),
        "releases/ev.yaml": _two_stage_release(name),
    }, "1.0.0")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log",
              extra_args=["--events-kafka", f"127.0.0.1:9092/{EVENTS_TOPIC}"])
    try:
        ctl.start()
        wait_for(lambda: stage_is(state, name, "staging", "1.0.0", "Succeeded"), 240, "staging Succeeded", ctl.log)
        cur = presto_conn(schema="ops", catalog="kafka").cursor()

        def events() -> list[tuple[str, ...]]:
            cur.execute(
                "SELECT event_type, stage, json_extract_scalar(detail, '$.gate'), "
                "json_extract_scalar(detail, '$.verdict'), json_extract_scalar(detail, '$.kind'), "
                f"json_extract_scalar(detail, '$.op') FROM kafka.ops.pipectl_events WHERE release = '{name}'"
            )
            return [tuple(r) for r in cur.fetchall()]

        wait_for(lambda: any(e[0] == "promotion" and e[1] == "staging" for e in events()), 30,
                 "the staging promotion event in Presto", ctl.log)
        rows = events()
        assert ("gate", "staging", "counts-readable", "pass", None, None) in rows, rows
        assert ("action", "dev", None, None, "Topic", "create") in rows, rows
        assert ("action", "staging", None, None, "Table", "create") in rows, rows
        assert {"promotion", "transition", "audit"} <= {e[0] for e in rows}, rows

        # the runbook's queries, as written (the release name swapped for this test's)
        one, verdicts, rollbacks = _runbook_queries()
        cur.execute(one.replace("'host-metrics'", f"'{name}'"))
        history = [tuple(r) for r in cur.fetchall()]
        assert [r[0] for r in history][:1] and "promotion" in {r[1] for r in history}, history
        assert [r[0] for r in history] == sorted(r[0] for r in history)
        cur.execute(verdicts)
        assert (name, "counts-readable", "pass") in {tuple(r[:3]) for r in cur.fetchall()}
        cur.execute(rollbacks)
        assert all(r[1] != name for r in cur.fetchall())  # this release was never rolled back
    finally:
        ctl.stop()
        drop_everything(uid, [f"it{uid}_ev", f"it{uid}s_ev"], folder, None)
