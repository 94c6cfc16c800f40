"""The exactly-once Iceberg sink (controller/jobkit/iceberg_sink.py) on the real local stack.

The example job (manifests/jobs/host_metrics_agg.py, default ``--sink idempotent``) writes into an
Iceberg table (``days(window_start)``, format v2) from a topic with known events: ``make_sink``
picks the Iceberg sink for it. The job is killed with SIGKILL while a batch is in flight — after
that batch's Iceberg commit (its log line is out) but before Spark's own commit log entry, the
case the snapshot summary's batch id exists for; if that moment is missed, while a later batch
writes its files — and restarted on the same checkpoint. Presto's rows and per-window
counts then equal the aggregates computed from the events exactly; the snapshot summaries name
the query id and each batch once; no snapshot deleted a data file of an earlier batch's append.
The same with ``--emit final`` (each window written once, when the watermark passes it): every
commit is an append, none a MERGE.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.integration.test_example_job_idempot as idem

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 600.0


class IcebergPipeline(idem.Pipeline):
    job_args: tuple[str, ...] = ()
    """Arguments every run of the job gets (``--emit final`` ...)."""

    def argv(self, *extra: str) -> list[str]:
        return super().argv(*self.job_args, *extra)

    def table_ddl(self) -> str:
        return (
            f"CREATE TABLE iceberg.`{self.db}`.`{self.table}` (host STRING, metric STRING, "
            "window_start TIMESTAMP_NTZ, samples BIGINT, avg_value DOUBLE, max_value DOUBLE) USING iceberg "
            "PARTITIONED BY (days(window_start)) TBLPROPERTIES ('format-version'='2')"
        )

    def drop(self, hive_conn: Callable[..., Any]) -> None:
        try:
            hive_conn().cursor().execute(f"DROP TABLE IF EXISTS iceberg.`{self.db}`.`{self.table}` PURGE")
        finally:
            super().drop(hive_conn)

    def uncommitted_data_files(self) -> bool:
        metas = list((self.table_dir / "metadata").glob("*.metadata.json"))
        newest = max((m.stat().st_mtime for m in metas), default=0.0)
        return any(f.stat().st_mtime > newest for f in (self.table_dir / "data").rglob("*.parquet"))


def presto_rows(presto_conn: Callable[..., Any], p: IcebergPipeline) -> list[tuple[Any, ...]]:
    cur = presto_conn(catalog="iceberg", schema=p.db).cursor()
    cur.execute(
        f'SELECT host, metric, CAST(window_start AS varchar), samples, avg_value, max_value '
        f'FROM iceberg."{p.db}"."{p.table}" ORDER BY host, metric, window_start'
    )
    return [(h, m, ws[:19], n, a, mx) for h, m, ws, n, a, mx in cur.fetchall()]


def presto_query(presto_conn: Callable[..., Any], p: IcebergPipeline, sql: str) -> list[tuple[Any, ...]]:
    cur = presto_conn(catalog="iceberg", schema=p.db).cursor()
    cur.execute(sql)
    return list(cur.fetchall())


@pytest.fixture
def pipeline(
    stack: dict[str, Any], spark_env: dict[str, str], hive_conn: Callable[..., Any], tmp_path: Path, unique_name: str
) -> Iterator[IcebergPipeline]:
    p = IcebergPipeline(stack, spark_env, tmp_path, unique_name)
    p.create(hive_conn)
    yield p
    p.drop(hive_conn)


def _kill_mid_batch(p: IcebergPipeline, proc: Any, log: Path) -> tuple[int, str]:
    """SIGKILL the job in a batch >= 2 after its Iceberg commit (the sink logged the batch) but
    before Spark's commit log has it; if that moment is missed up to batch 4, while it writes."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        batch = p.in_flight()
        if batch is not None and batch >= 2:
            logged = f"host_metrics_agg: batch {batch}: " in log.read_text(errors="replace")
            if logged and batch not in p.batches("commits"):
                os.killpg(proc.pid, signal.SIGKILL)
                return batch, "after the Iceberg commit, before Spark's commit log"
            if batch >= 4 and p.uncommitted_data_files():
                os.killpg(proc.pid, signal.SIGKILL)
                return batch, "while the batch's data files were being written"
        time.sleep(0.005)
    raise AssertionError("no batch was caught in flight")


def _run_and_kill(p: IcebergPipeline) -> tuple[int, str]:
    """Start the job in batches of 2,000 events and SIGKILL it mid-batch (``_kill_mid_batch``)."""
    proc, log = p.start("--max-offsets-per-trigger", "2000")
    try:
        killed_in, when = _kill_mid_batch(p, proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if killed_in in p.batches("commits"):  # Spark wrote it between the check and the kill
        when = "just after Spark's commit log"
    print(f"kill -9 in batch {killed_in}: {when}")
    return killed_in, when


def test_kill_9_mid_batch_then_restart_gives_exact_counts_in_presto(
    pipeline: IcebergPipeline, presto_conn: Callable[..., Any]
) -> None:
    p = pipeline
    midnight = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    # Two interleaved sets: every batch has events of minutes earlier batches wrote (MERGE).
    events = p.produce((31, 6000, midnight - dt.timedelta(seconds=60), 10.0), (32, 6000, midnight, 10.0))
    want = [r[:6] for r in idem.expected_rows(events)]

    killed_in, when = _run_and_kill(p)

    p.run_available_now()  # same checkpoint: replays batch killed_in, then the rest
    got = presto_rows(presto_conn, p)
    idem.assert_exact([(*r, "") for r in got], [(*r, "") for r in want])

    per_window = Counter[str]()
    for r in want:
        per_window[r[2]] += r[3]
    counts = presto_query(
        presto_conn, p,
        f'SELECT CAST(window_start AS varchar), sum(samples) FROM "{p.db}"."{p.table}" GROUP BY 1 ORDER BY 1',
    )
    assert {w[:19]: int(n) for w, n in counts} == dict(per_window)
    assert sum(per_window.values()) == len(events) == 12000

    # One snapshot per committed batch, each batch id once, all under one query id.
    summaries = [
        json.loads(s) if isinstance(s, str) else s
        for (s,) in presto_query(
            presto_conn, p, f'SELECT summary FROM "{p.db}"."{p.table}$snapshots" ORDER BY committed_at'
        )
    ]
    ids = [int(s["pipectl.batch-id"]) for s in summaries]
    assert ids == sorted(set(ids)), f"a batch committed twice: {ids}"
    assert len({s["pipectl.query-id"] for s in summaries}) == 1
    assert killed_in in ids
    print(f"snapshots: {len(ids)} batches {ids}; rows {len(got)}")
    replay = [ln for ln in (p.tmp / f"job-{p.runs}.log").read_text().splitlines() if f"batch {killed_in}:" in ln]
    print("replay:", replay[0].split("host_metrics_agg: ", 1)[-1] if replay else "?")
    if when.startswith("after the Iceberg commit"):
        assert replay and "already committed" in replay[0]


def test_emit_final_kill_9_mid_batch_then_restart_gives_exact_counts_and_only_appends(
    pipeline: IcebergPipeline, presto_conn: Callable[..., Any]
) -> None:
    """12,000 events over 10 minutes in batches of 2,000 (100 s of event time each, a 30 s
    watermark): from batch 1 on each batch closes a window or two and appends them. A sentinel
    event a day later, sent before the restart, closes the last windows."""
    p = pipeline
    p.job_args = ("--emit", "final", "--watermark", "30 seconds")
    start = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    events = p.produce((41, 12000, start, 50.0))
    want = [r[:6] for r in idem.expected_rows(events)]

    _run_and_kill(p)
    p.produce((42, 1, start + dt.timedelta(days=1), 10.0))  # the sentinel
    p.run_available_now()

    got = presto_rows(presto_conn, p)
    assert not [r for r in got if r[2].startswith("2026-03-04")], "the sentinel's window is still open"
    idem.assert_exact([(*r, "") for r in got], [(*r, "") for r in want])
    summaries = [
        json.loads(s) if isinstance(s, str) else s
        for (s,) in presto_query(
            presto_conn, p,
            f'SELECT summary FROM "{p.db}"."{p.table}$snapshots" ORDER BY committed_at',
        )
    ]
    ids = [int(s["pipectl.batch-id"]) for s in summaries]
    assert ids == sorted(set(ids)), f"a batch committed twice: {ids}"
    ops = {op for (op,) in presto_query(presto_conn, p, f'SELECT operation FROM "{p.db}"."{p.table}$snapshots"')}
    assert ops == {"append"}, f"every commit an append, no MERGE: {ops}"
    for s in summaries:
        assert int(s.get("deleted-data-files", 0)) == 0 and int(s.get("added-delete-files", 0)) == 0, s
    print(f"snapshots: {len(ids)} appends, batches {ids}; rows {len(got)}")
