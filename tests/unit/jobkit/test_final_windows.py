"""``--emit final`` on a local Spark: the example job's aggregation as a stateful stream in append
mode emits each window once, with exact counts, only once the watermark passed it; undecodable
records are counted through the progress listener and left out."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from controller.jobkit.final_windows import final_stream
from controller.jobkit.kafka_job import DecodeTally, base_parser
from tests.unit.jobkit.test_sink_merge import spark  # noqa: F401 (the module's local Spark fixture)

JOB = Path(__file__).resolve().parents[3] / "manifests" / "jobs" / "host_metrics_agg.py"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("host_metrics_agg", JOB)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_each_window_is_emitted_once_when_the_watermark_passes_it(spark: Any, tmp_path: Path) -> None:  # noqa: F811
    from pyspark.sql import functions as F

    src = tmp_path / "in"
    src.mkdir()
    # file 1: minutes 00 and 01 of host a (3 + 2 events) and one undecodable record
    _write(src, "1.json", [
        {"host": "a", "metric": "cpu", "value": 1.0, "ts": "2026-01-01 00:00:05"},
        {"host": "a", "metric": "cpu", "value": 3.0, "ts": "2026-01-01 00:00:30"},
        {"host": "a", "metric": "cpu", "value": 5.0, "ts": "2026-01-01 00:00:59"},
        {"host": "a", "metric": "cpu", "value": 2.0, "ts": "2026-01-01 00:01:10"},
        {"host": "a", "metric": "cpu", "value": 4.0, "ts": "2026-01-01 00:01:20"},
        {"host": None, "metric": None, "value": None, "ts": None, "err": "magic"},
    ])
    # file 2: a late event of minute 01 (within the 10 s watermark), then one at 00:03:00
    _write(src, "2.json", [
        {"host": "a", "metric": "cpu", "value": 6.0, "ts": "2026-01-01 00:01:15"},
        {"host": "a", "metric": "cpu", "value": 7.0, "ts": "2026-01-01 00:03:00"},
    ])
    raw = (
        spark.readStream.schema("host string, metric string, value double, ts timestamp, err string")
        .option("maxFilesPerTrigger", 1).json(str(src))
    )
    events = raw.select(
        "host", "metric", "value", F.col("ts").alias("event_time"), F.col("err").alias("decode_error")
    ).withWatermark("event_time", "10 seconds")
    tally = DecodeTally()
    stream = final_stream(spark, events, _example().aggregate_minutes, "final-unit", tally.add)
    seen: list[tuple[int, str, int, float, float]] = []

    def keep(batch: Any, batch_id: int) -> None:
        for r in batch.collect():
            seen.append((batch_id, str(r.window_start)[11:16], r.samples, r.avg_value, r.max_value))

    q = (
        stream.writeStream.queryName("final-unit").outputMode("append")
        .option("checkpointLocation", str(tmp_path / "ck")).foreachBatch(keep)
        .trigger(availableNow=True).start()
    )
    q.awaitTermination(120)
    spark.streams.resetTerminated()

    by_window = {w: (n, avg, mx) for _b, w, n, avg, mx in seen}
    assert sorted(w for _b, w, *_ in seen) == ["00:00", "00:01"], seen  # each once; 00:03 still open
    assert by_window["00:00"] == (3, 3.0, 5.0)
    assert by_window["00:01"] == (3, 4.0, 6.0)  # the late event is in, not a second row
    first_batch = {w: b for b, w, *_ in seen}
    assert first_batch["00:01"] > first_batch["00:00"], "00:01 closes only after file 2 moved the watermark"
    deadline = time.monotonic() + 10  # progress events reach listeners asynchronously
    while not tally.snapshot()["undecodableRecords"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tally.snapshot()["undecodableByReason"] == {"magic": 1}


def test_emit_is_an_argument_of_every_job() -> None:
    p = base_parser("x", "x", Path("s.avsc"))
    common = ["--bootstrap-servers", "b", "--topic", "t", "--table", "d.t", "--checkpoint", "c",
              "--query-name", "q", "--version", "1"]
    assert p.parse_args(common).emit == "updates"
    assert p.parse_args([*common, "--emit", "final"]).emit == "final"
