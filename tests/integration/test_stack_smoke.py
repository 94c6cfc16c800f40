"""Smoke tests of the local stack with the real clients pipectl uses (no mocks).

1. confluent-kafka: create a topic, produce, consume.
2. One shared metastore: a table created through the Spark Thrift Server (pyhive), written by a
   separate Spark process, read back through Presto (pyhive presto dialect).
3. Spark Structured Streaming (separate process) reads a Kafka topic with the Kafka source into a
   Hive table; the rows are visible through Presto.
4. A DAG file dropped into the DAG folder is picked up by Airflow and run via apache-airflow-client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

SPARK_TIMEOUT = 300


def _spark_job(script: str, params: dict[str, Any], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``script`` in a separate Python process that creates its own SparkSession (no master or
    metastore given here: everything comes from the stack's SPARK_CONF_DIR). It prints one JSON
    line prefixed with RESULT=."""
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(params)],
        env=env, cwd=str(cwd), capture_output=True, text=True, timeout=SPARK_TIMEOUT, check=False,
    )
    result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")]
    assert proc.returncode == 0 and result, (
        f"spark job failed ({proc.returncode})\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-6000:]}")
    out: dict[str, Any] = json.loads(result[-1].removeprefix("RESULT="))
    return out


def _hive_exec(conn: Any, *statements: str) -> None:
    cur = conn.cursor()
    try:
        for sql in statements:
            cur.execute(sql)  # DDL: no fetchall() (pyhive raises on it)
    finally:
        cur.close()


def _query(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


# --- 0. the stack itself ---------------------------------------------------------------------------

def test_stack_status_reports_all_healthy(stack: dict[str, Any]) -> None:
    proc = subprocess.run([sys.executable, "-m", "controller.devstack", "status", "--json"],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=stack["repo_root"])
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {r["component"] for r in rows} == set(stack["components"])
    assert all(r["state"] == "healthy" and r["pid"] and r["rss_mb"] > 0 for r in rows), rows
    assert Path(stack["spark_conf_dir"], "spark-defaults.conf").is_file()
    assert any("spark-sql-kafka-0-10" in j for j in stack["spark_jars"])


# --- 1. Kafka --------------------------------------------------------------------------------------

def test_kafka_create_produce_consume(kafka_bootstrap: str, unique_name: str) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"smoke_{unique_name}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    futures[topic].result(timeout=30)
    try:
        # CreateTopics returns once the controller committed it; the broker's metadata cache may
        # lag a little on a busy machine.
        deadline = time.monotonic() + 30
        while topic not in admin.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, f"{topic} not in the broker's metadata after 30s"
            time.sleep(0.5)

        producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
        sent = [f"message-{i}".encode() for i in range(20)]
        for i, value in enumerate(sent):
            producer.produce(topic, key=str(i % 4).encode(), value=value)
        assert producer.flush(30) == 0

        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g_{unique_name}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        received: list[bytes] = []
        deadline = time.monotonic() + 60
        try:
            while len(received) < len(sent) and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                received.append(msg.value())
        finally:
            consumer.close()
        assert sorted(received) == sorted(sent)
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


# --- 2. Thrift DDL -> separate Spark writer -> Presto ------------------------------------------------

BATCH_WRITER = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession
    p = json.loads(sys.argv[1])
    spark = SparkSession.builder.appName("smoke-batch-writer").enableHiveSupport().getOrCreate()
    df = spark.createDataFrame([(i, f"name-{i}", i * 1.5) for i in range(p["rows"])],
                               "id INT, name STRING, score DOUBLE")
    df.write.insertInto(p["table"], overwrite=True)
    n = spark.table(p["table"]).count()
    print("RESULT=" + json.dumps({"count": n, "master": spark.sparkContext.master}))
    spark.stop()
""")


def test_thrift_table_written_by_spark_read_by_presto(
    hive_conn: Any, presto_conn: Any, spark_env: dict[str, str], unique_name: str, tmp_path: Path,
) -> None:
    db = f"smoke_{unique_name}"
    table = f"{db}.people"
    hive = hive_conn()
    _hive_exec(hive, f"CREATE DATABASE {db}",
               f"CREATE TABLE {table} (id INT, name STRING, score DOUBLE) STORED AS PARQUET")
    try:
        # The Thrift Server sees its own (empty) table.
        assert _query(hive, f"SELECT count(*) FROM {table}") == [(0,)]

        out = _spark_job(BATCH_WRITER, {"table": table, "rows": 25}, spark_env, tmp_path)
        assert out["count"] == 25
        assert out["master"].startswith("local")  # from the stack's spark-defaults.conf

        presto = presto_conn(schema=db)
        rows = _query(presto, "SELECT id, name, score FROM people ORDER BY id")
        assert len(rows) == 25
        assert rows[0] == (0, "name-0", 0.0)
        assert rows[-1] == (24, "name-24", 36.0)
        assert _query(presto, f"SELECT count(*), sum(id) FROM hive.{db}.people") == [(25, 300)]
        # ... and the Thrift Server sees what the other process wrote.
        assert _query(hive, f"SELECT count(*) FROM {table}") == [(25,)]
    finally:
        _hive_exec(hive, f"DROP DATABASE IF EXISTS {db} CASCADE")


# --- 3. Kafka -> Structured Streaming (separate process) -> Hive table -> Presto --------------------

STREAM_JOB = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession, functions as F
    p = json.loads(sys.argv[1])
    spark = SparkSession.builder.appName("smoke-stream").enableHiveSupport().getOrCreate()
    schema = "id INT, name STRING"
    src = (spark.readStream.format("kafka")
           .option("kafka.bootstrap.servers", p["bootstrap"])
           .option("subscribe", p["topic"])
           .option("startingOffsets", "earliest")
           .load())
    rows = (src.select(F.from_json(F.col("value").cast("string"), schema).alias("v"),
                       F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"))
               .select("v.id", "v.name", "kafka_partition", "kafka_offset"))

    def write(batch, batch_id):
        batch.write.insertInto(p["table"])

    q = (rows.writeStream.foreachBatch(write)
         .option("checkpointLocation", p["checkpoint"])
         .trigger(availableNow=True)
         .start())
    q.awaitTermination(p["timeout"])
    ok = not q.isActive and q.exception() is None
    n = spark.table(p["table"]).count()
    print("RESULT=" + json.dumps({"finished": ok, "count": n,
                                  "batches": len(q.recentProgress)}))
    spark.stop()
""")


def test_streaming_kafka_to_hive_visible_in_presto(
    kafka_bootstrap: str, hive_conn: Any, presto_conn: Any, spark_env: dict[str, str],
    unique_name: str, tmp_path: Path,
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"smoke_stream_{unique_name}"
    db = f"smoke_{unique_name}"
    table = f"{db}.events"
    n_events = 40
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)
    hive = hive_conn()
    _hive_exec(hive, f"CREATE DATABASE {db}",
               f"CREATE TABLE {table} (id INT, name STRING, kafka_partition INT, kafka_offset BIGINT) "
               "STORED AS PARQUET")
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(n_events):
            producer.produce(topic, key=str(i).encode(),
                             value=json.dumps({"id": i, "name": f"event-{i}"}).encode())
        assert producer.flush(30) == 0

        out = _spark_job(STREAM_JOB, {"bootstrap": kafka_bootstrap, "topic": topic, "table": table,
                                      "checkpoint": str(tmp_path / "checkpoint"), "timeout": 180},
                         spark_env, tmp_path)
        assert out["finished"], out
        assert out["count"] == n_events

        presto = presto_conn(schema=db)
        assert _query(presto, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events") == [
            (n_events, n_events, 0, n_events - 1)]
        assert _query(presto, "SELECT count(DISTINCT kafka_partition) FROM events") == [(2,)]
        assert _query(presto, "SELECT name FROM events WHERE id = 7") == [("event-7",)]
    finally:
        _hive_exec(hive, f"DROP DATABASE IF EXISTS {db} CASCADE")
        admin.delete_topics([topic])[topic].result(timeout=30)


# --- 4. Airflow: DAG file -> picked up -> run via the REST client ------------------------------------

DAG_TEMPLATE = textwrap.dedent('''
    from datetime import datetime

    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator


    def _check(**context):
        assert context["params"]["answer"] == 42
        return "checked"


    with DAG(dag_id="{dag_id}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False,
             tags=["pipectl-smoke"], params={{"answer": 42}}) as dag:
        hello = BashOperator(task_id="hello", bash_command="echo hello from $AIRFLOW_HOME")
        check = PythonOperator(task_id="check", python_callable=_check)
        hello >> check
''')


def test_airflow_picks_up_dag_and_runs_it(stack: dict[str, Any], airflow_api: Any, unique_name: str) -> None:
    from airflow_client.client.api import dag_api, dag_run_api, task_instance_api
    from airflow_client.client.exceptions import NotFoundException
    from airflow_client.client.model.dag_run import DAGRun

    dag_id = f"pipectl_smoke_{unique_name}"
    dag_file = Path(stack["airflow_dags_folder"]) / f"{dag_id}.py"
    dag_file.write_text(DAG_TEMPLATE.format(dag_id=dag_id))
    dags = dag_api.DAGApi(airflow_api)
    runs = dag_run_api.DAGRunApi(airflow_api)
    try:
        deadline = time.monotonic() + 120
        dag = None
        while time.monotonic() < deadline:
            try:
                dag = dags.get_dag(dag_id)
                break
            except NotFoundException:
                time.sleep(1)
        assert dag is not None, f"{dag_id} not picked up within 120s"
        assert not dag.is_paused
        assert "pipectl-smoke" in [t.name for t in dag.tags]

        run_id = f"smoke_{unique_name}"
        runs.post_dag_run(dag_id, DAGRun(dag_run_id=run_id, conf={}))
        deadline = time.monotonic() + 240
        state = None
        while time.monotonic() < deadline:
            state = str(runs.get_dag_run(dag_id, run_id).state)
            if state in ("success", "failed"):
                break
            time.sleep(2)
        tis = task_instance_api.TaskInstanceApi(airflow_api).get_task_instances(dag_id, run_id)
        ti_states = {ti.task_id: str(ti.state) for ti in tis.task_instances}
        assert state == "success", f"dag run state {state}, task states {ti_states}"
        assert ti_states == {"hello": "success", "check": "success"}
    finally:
        dag_file.unlink(missing_ok=True)
        try:
            dags.delete_dag(dag_id)
        except Exception:
            pass


@pytest.mark.parametrize("key", ["spark_conf_dir", "spark_home", "warehouse_dir", "airflow_dags_folder",
                                 "airflow_url", "java_home", "kafka_bootstrap", "presto_url"])
def test_stack_json_has_contract_keys(stack: dict[str, Any], key: str) -> None:
    assert stack.get(key), f"stack.json lacks {key}"
