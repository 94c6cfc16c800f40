"""Unit tests of the jobkit sink: merge math (pure and Spark), identifier checks, and the
idempotent partition sink against a local Spark with an embedded (Derby) Hive metastore,
including a replay after a crash between two partition swaps."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.jobkit.sink import (
    IdempotentPartitionSink,
    MergeSpec,
    SinkError,
    check_partition_value,
    check_query_name,
    make_sink,
    merge_frames,
    merge_rows,
    quote_ident,
    split_table,
    sql_string,
)

SPEC = MergeSpec(
    keys=("host", "metric", "window_start"), count="samples", weighted_mean=("avg_value",), maximum=("max_value",)
)
T0 = dt.datetime(2026, 1, 1, 0, 0)
T1 = dt.datetime(2026, 1, 1, 0, 1)
D2 = dt.datetime(2026, 1, 2, 23, 59)


def row(host: str, ts: dt.datetime, n: int, avg: float, mx: float, metric: str = "cpu") -> dict[str, Any]:
    return {
        "host": host, "metric": metric, "window_start": ts, "samples": n,
        "avg_value": avg, "max_value": mx, "dt": ts.strftime("%Y-%m-%d"),
    }


# --- pure merge -----------------------------------------------------------------------------


def test_weighted_mean_max_and_count() -> None:
    out = merge_rows([row("h1", T0, 2, 1.0, 1.5), row("h1", T0, 6, 5.0, 9.0)], SPEC, "dt")
    assert out == [row("h1", T0, 8, 4.0, 9.0)]


def test_late_data_merges_into_existing_minute_instead_of_duplicating() -> None:
    existing = [row("h1", T0, 10, 2.0, 3.0), row("h1", T1, 1, 7.0, 7.0)]
    late = [row("h1", T0, 5, 5.0, 4.0)]
    out = merge_rows(existing + late, SPEC, "dt")
    assert len(out) == 2
    assert out[0] == row("h1", T0, 15, 3.0, 4.0)
    assert out[1] == row("h1", T1, 1, 7.0, 7.0)


def test_merging_is_order_independent_and_sorted() -> None:
    rows = [row("h2", T1, 3, 1.0, 1.0), row("h1", D2, 1, 2.0, 2.0), row("h1", T0, 4, 3.0, 3.5)]
    a = merge_rows(rows, SPEC, "dt")
    b = merge_rows(list(reversed(rows)), SPEC, "dt")
    assert a == b
    assert [(r["host"], r["window_start"]) for r in a] == [("h1", T0), ("h1", D2), ("h2", T1)]


def test_merging_merged_output_again_changes_nothing() -> None:
    rows = [row("h1", T0, 3, 1.0, 2.0), row("h1", T0, 1, 9.0, 9.0), row("h2", T0, 2, 4.0, 5.0)]
    once = merge_rows(rows, SPEC, "dt")
    assert merge_rows(once, SPEC, "dt") == once


def test_nulls_and_empty_counts_are_ignored() -> None:
    rows = [row("h1", T0, 2, 4.0, 5.0), {**row("h1", T0, 2, 0.0, 0.0), "avg_value": None, "max_value": None},
            row("h1", T0, 0, 100.0, 100.0)]
    out = merge_rows(rows, SPEC, "dt")
    assert out[0]["samples"] == 4
    assert out[0]["avg_value"] == 4.0  # weighted only by rows carrying a value
    assert out[0]["max_value"] == 5.0


def test_partitions_are_separate_groups() -> None:
    rows = [row("h1", T0, 1, 1.0, 1.0), {**row("h1", T0, 1, 3.0, 3.0), "dt": "2026-01-02"}]
    assert len(merge_rows(rows, SPEC, "dt")) == 2
    assert len(merge_rows(rows, SPEC, None)) == 1


def test_min_and_total_rules() -> None:
    spec = MergeSpec(keys=("k",), count="n", minimum=("lo",), total=("bytes",))
    out = merge_rows([{"k": "a", "n": 1, "lo": 3, "bytes": 10}, {"k": "a", "n": 2, "lo": 1, "bytes": 5}], spec)
    assert out == [{"k": "a", "n": 3, "lo": 1, "bytes": 15}]


# --- identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["telemetry.t", "dev_telemetry.host_metrics_1m", "_a._b9"])
def test_split_table_accepts(name: str) -> None:
    assert ".".join(split_table(name)) == name


@pytest.mark.parametrize("name", ["t", "a.b.c", "Tele.t", "a.b;drop", "a.`b`", "a.b c", "9a.b", "a."])
def test_split_table_rejects(name: str) -> None:
    with pytest.raises(SinkError):
        split_table(name)


def test_quote_and_literals() -> None:
    assert quote_ident("dt") == "`dt`"
    with pytest.raises(SinkError):
        quote_ident("d`t")
    assert sql_string("file:/w/t/dt=2026-01-01/_v=3-q") == "'file:/w/t/dt=2026-01-01/_v=3-q'"
    for bad in ("a'b", "a\\b", "a\nb"):
        with pytest.raises(SinkError):
            sql_string(bad)
    assert check_partition_value("2026-01-01") == "2026-01-01"
    for bad_value in ("2026'01", "", None, "a/b", "a b"):
        with pytest.raises(SinkError):
            check_partition_value(bad_value)
    assert check_query_name("dev-host-metrics-host-metrics-agg") == "dev-host-metrics-host-metrics-agg"
    with pytest.raises(SinkError):
        check_query_name("../x")


def test_merge_spec_validation() -> None:
    with pytest.raises(SinkError):
        MergeSpec(keys=("Host",), count="n")
    with pytest.raises(SinkError):
        MergeSpec(keys=("k",), count="k")
    with pytest.raises(SinkError):
        MergeSpec(keys=(), count="n")


# --- Spark ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java for a local Spark")
    from pyspark.sql import SparkSession

    root = tmp_path_factory.mktemp("spark")
    conf_dir = root / "conf"  # keep a developer's SPARK_CONF_DIR (shared metastore) out of this test
    conf_dir.mkdir()
    old = os.environ.get("SPARK_CONF_DIR")
    os.environ["SPARK_CONF_DIR"] = str(conf_dir)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("jobkit-unit")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(root / "warehouse"))
        .config("spark.hadoop.hive.metastore.uris", "")
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
        )
        .enableHiveSupport()
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    if old is None:
        os.environ.pop("SPARK_CONF_DIR", None)
    else:
        os.environ["SPARK_CONF_DIR"] = old


def _frame(spark: Any, rows: list[dict[str, Any]]) -> Any:
    schema = (
        "host string, metric string, window_start timestamp, samples bigint, "
        "avg_value double, max_value double, dt string"
    )
    cols = ["host", "metric", "window_start", "samples", "avg_value", "max_value", "dt"]
    return spark.createDataFrame([tuple(r[c] for c in cols) for r in rows], schema)


def _rows(df: Any) -> list[dict[str, Any]]:
    out = [r.asDict() for r in df.collect()]
    return sorted(out, key=lambda r: (r["host"], r["metric"], r["window_start"], r["dt"]))


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if {k: v for k, v in x.items() if k != "avg_value"} != {k: v for k, v in y.items() if k != "avg_value"}:
            return False
        if not math.isclose(x["avg_value"], y["avg_value"], rel_tol=1e-12):
            return False
    return True


def test_merge_frames_matches_merge_rows(spark: Any) -> None:
    existing = [row("h1", T0, 10, 2.0, 3.0), row("h2", T1, 1, 7.0, 7.0), row("h1", D2, 3, 1.0, 1.0)]
    batch = [row("h1", T0, 5, 5.0, 4.0), row("h3", T0, 2, 0.5, 0.75), row("h1", D2, 1, 5.0, 8.0)]
    got = _rows(merge_frames([_frame(spark, existing), _frame(spark, batch)], SPEC, "dt"))
    assert _same(got, merge_rows(existing + batch, SPEC, "dt"))
    # an Iceberg table's dt is a plain column the spec does not name: carried the same way
    carried = _rows(merge_frames([_frame(spark, existing), _frame(spark, batch)], SPEC, carried=["dt"]))
    assert _same(carried, got)


TABLE_DDL = (
    "CREATE TABLE {t} (host STRING, metric STRING, window_start TIMESTAMP, samples BIGINT, "
    "avg_value DOUBLE, max_value DOUBLE) PARTITIONED BY (dt STRING) STORED AS PARQUET"
)
BATCHES = [
    [row("h1", T0, 2, 1.0, 1.5), row("h1", D2, 1, 3.0, 3.0)],
    [row("h1", T0, 2, 4.0, 5.0), row("h2", T1, 4, 2.0, 2.5)],  # late data for h1/T0 merges
    [row("h2", T1, 1, 10.0, 10.0), row("h1", D2, 3, 1.0, 2.0)],
]


def _fresh_table(spark: Any, name: str) -> str:
    spark.sql("CREATE DATABASE IF NOT EXISTS jobkit_unit")
    spark.sql(f"DROP TABLE IF EXISTS jobkit_unit.{name}")
    spark.sql(TABLE_DDL.format(t=f"jobkit_unit.{name}"))
    return f"jobkit_unit.{name}"


def test_idempotent_sink_merges_replays_and_prunes(spark: Any) -> None:
    table = _fresh_table(spark, "clean")
    sink = IdempotentPartitionSink(spark, table, "q-unit", SPEC, version="1.2.3", keep_versions=2)
    for i, b in enumerate(BATCHES):
        result = sink.write_batch(_frame(spark, b), i)
        assert result.skipped is None
    expected = merge_rows([r for b in BATCHES for r in b], SPEC, "dt")
    assert _same(_rows(spark.table(table)), expected)

    # Spark re-running a committed batch (crash after the sink, before Spark's commit log).
    again = sink.write_batch(_frame(spark, BATCHES[-1]), len(BATCHES) - 1)
    assert again.skipped == "batch already committed"
    assert _same(_rows(spark.table(table)), expected)
    assert sink.last_committed_batch() == len(BATCHES) - 1

    location = sink.table_info().location.replace("file:", "")
    dirs = sorted(p.name for p in (Path(location) / "dt=2026-01-01").iterdir())
    assert dirs == ["_v=1-q-unit", "_v=2-q-unit"]  # keep_versions=2, live one included
    assert sink.partition_location("2026-01-01").endswith("/dt=2026-01-01/_v=2-q-unit")


class _Crash(Exception):
    pass


class _CrashAfterFirstSwap(IdempotentPartitionSink):
    """Dies between two partition swaps of one batch, like kill -9 would."""

    armed = True

    def _write_partition(self, *args: Any, **kwargs: Any) -> str:
        loc = super()._write_partition(*args, **kwargs)
        if self.armed:
            self.armed = False
            raise _Crash(loc)
        return loc


def test_replay_after_crash_between_partition_swaps_gives_identical_rows(spark: Any) -> None:
    table = _fresh_table(spark, "crashed")
    sink = _CrashAfterFirstSwap(spark, table, "q-crash", SPEC)
    sink.armed = False
    sink.write_batch(_frame(spark, BATCHES[0]), 0)
    last = [*BATCHES[2], row("h9", T0, 7, 1.0, 1.0)]  # touches both partitions
    expected = merge_rows([*BATCHES[0], *last], SPEC, "dt")

    sink.armed = True
    with pytest.raises(_Crash):
        sink.write_batch(_frame(spark, last), 1)
    assert not sink.committed(1)
    half_way = _rows(spark.table(table))  # one partition was swapped before the "crash"
    assert not _same(half_way, expected)
    assert not _same(half_way, merge_rows(BATCHES[0], SPEC, "dt"))

    replay = sink.write_batch(_frame(spark, last), 1)
    assert [p.skipped for p in replay.partitions] == [True, False]
    assert sink.committed(1)
    assert _same(_rows(spark.table(table)), expected)
    swapped_before = [r for r in half_way if r["dt"] == "2026-01-01"]
    assert [r for r in _rows(spark.table(table)) if r["dt"] == "2026-01-01"] == swapped_before


def test_append_sink_duplicates_on_replay(spark: Any) -> None:
    """The benchmark baseline: plain INSERT INTO, so a replayed batch doubles its rows."""
    table = _fresh_table(spark, "append")
    sink = make_sink("append", spark, table, "q-append", SPEC)
    sink.write_batch(_frame(spark, BATCHES[0]), 0)
    sink.write_batch(_frame(spark, BATCHES[0]), 0)
    assert len(_rows(spark.table(table))) == 2 * len(BATCHES[0])
    with pytest.raises(SinkError):
        make_sink("upsert", spark, table, "q", SPEC)


def test_one_writer_per_table(spark: Any, tmp_path: Path) -> None:
    """A second query, or the same query on a new checkpoint, would count events twice."""
    table = _fresh_table(spark, "owned")
    ckpt_a, ckpt_b = tmp_path / "a", tmp_path / "b"
    for ckpt, qid in ((ckpt_a, "aaaaaaaa-1111"), (ckpt_b, "bbbbbbbb-2222")):
        ckpt.mkdir()
        (ckpt / "metadata").write_text(f'{{"id":"{qid}"}}')
    first = IdempotentPartitionSink(spark, table, "q-own", SPEC, checkpoint=str(ckpt_a))
    first.write_batch(_frame(spark, BATCHES[0]), 0)
    assert first.writer == "q-own-aaaaaaaa"
    assert first.partition_location("2026-01-01").endswith("/_v=0-q-own-aaaaaaaa")

    with pytest.raises(SinkError, match="already written by query 'q-own'"):
        IdempotentPartitionSink(spark, table, "q-own", SPEC, checkpoint=str(ckpt_b)).write_batch(
            _frame(spark, BATCHES[1]), 0
        )
    with pytest.raises(SinkError, match="already written"):
        IdempotentPartitionSink(spark, table, "q-other", SPEC).write_batch(_frame(spark, BATCHES[1]), 0)
    # The same checkpoint again (a restart) is the same writer.
    again = IdempotentPartitionSink(spark, table, "q-own", SPEC, checkpoint=str(ckpt_a))
    assert again.write_batch(_frame(spark, BATCHES[0]), 0).skipped == "batch already committed"

    # An explicit takeover: the new checkpoint's batch 0 is not mistaken for the old one's.
    new = IdempotentPartitionSink(spark, table, "q-own", SPEC, checkpoint=str(ckpt_b), takeover=True)
    assert new.write_batch(_frame(spark, BATCHES[1]), 0).skipped is None
    assert _same(_rows(spark.table(table)), merge_rows(BATCHES[0] + BATCHES[1], SPEC, "dt"))


def test_sink_refuses_mismatched_spec(spark: Any) -> None:
    table = _fresh_table(spark, "mismatch")
    spec = MergeSpec(keys=("host", "metric", "window_start"), count="samples", weighted_mean=("avg_value",))
    sink = IdempotentPartitionSink(spark, table, "q", spec)
    with pytest.raises(SinkError, match="do not match"):
        sink.write_batch(_frame(spark, BATCHES[0]), 0)
