"""The aggregation-job frame's argument handling (``controller.jobkit.kafka_job``) and the second
example job's arguments (``manifests/jobs/request_latency_agg.py``), without a JVM."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from controller.jobkit.kafka_job import base_parser, check_args, ending_offsets, spark_interval
from controller.jobkit.sink import SinkError

JOB = Path(__file__).resolve().parents[3] / "manifests" / "jobs" / "request_latency_agg.py"
REQUIRED = [
    "--bootstrap-servers", "127.0.0.1:9092", "--topic", "dev.web.requests", "--table", "dev_web.t",
    "--checkpoint", "/tmp/ckpt", "--query-name", "dev-request-latency-agg", "--version", "1.0.0",
]


@pytest.mark.parametrize(
    ("text", "want"),
    [("10s", "10 seconds"), ("500ms", "500 milliseconds"), ("2 minutes", "2 minutes"), ("1h", "1 hours")],
)
def test_spark_interval(text: str, want: str) -> None:
    assert spark_interval(text) == want


def test_spark_interval_refuses_what_spark_would_misread() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        spark_interval("10")


def test_ending_offsets_parses_sparks_json_and_refuses_garbage() -> None:
    assert ending_offsets('{"t": {"0": 120, "2": 7}}') == {"t": {0: 120, 2: 7}}
    with pytest.raises(argparse.ArgumentTypeError, match="--ending-offsets"):
        ending_offsets('{"t": 5}')


def test_base_parser_defaults_and_checks() -> None:
    args = check_args(base_parser("j", "d", Path("s.avsc")).parse_args(REQUIRED))
    assert (args.trigger, args.watermark, args.sink, args.schema) == (
        "10 seconds", "2 minutes", "idempotent", Path("s.avsc"),
    )
    bad = [*REQUIRED[:5], "no_database", *REQUIRED[6:]]
    with pytest.raises(SinkError):
        check_args(base_parser("j", "d", Path("s.avsc")).parse_args(bad))


def _job() -> ModuleType:
    spec = importlib.util.spec_from_file_location("request_latency_agg", JOB)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_request_latency_job_takes_its_defect_flag_and_merges_every_column() -> None:
    job = _job()
    args = job.parse_args([*REQUIRED, "--latency-factor", "1.3"])
    assert args.latency_factor == 1.3 and job.parse_args(REQUIRED).latency_factor == 1.0
    assert args.schema.name == "request_log_event.avsc" and args.schema.exists()
    columns = [c.split("`")[1] for c in job.TABLE_DDL_COLUMNS.split(", ")]
    assert sorted(job.MERGE_SPEC.all_columns) == sorted(columns)


def test_the_replay_planner_knows_which_options_the_frame_declares() -> None:
    from controller.plan.replay import FRAME_OPTIONS, JOB_FRAME, supports_option

    declared = {o for a in base_parser("j", "d", Path("s.avsc"))._actions for o in a.option_strings}
    assert FRAME_OPTIONS <= declared
    source = JOB.read_bytes()
    assert JOB_FRAME.encode() in source
    assert supports_option(source, "--ending-offsets") and supports_option(source, "--latency-factor")
    assert not supports_option(b"print('no frame, no options')\n", "--ending-offsets")
