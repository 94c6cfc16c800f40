"""Replay planning (controller.plan.replay): times, names, offsets JSON and the job's arguments."""

from __future__ import annotations

import json

import pytest

from controller.plan.replay import (
    ReplayError,
    count_between,
    offsets_json,
    parse_time,
    replay_args,
    replay_job,
    replay_tag,
    supports_option,
)
from controller.plan.resources import Column, Owner, StreamingJobResource, TableResource

ARGS = [
    "--bootstrap-servers", "127.0.0.1:9092", "--topic", "dev.telemetry.host_metrics",
    "--table", "dev_telemetry.host_metrics_1m__v1_0_0", "--checkpoint", "/ck/dev/hm/agg/v1_0_0",
    "--trigger", "10s", "--starting-offsets", "latest", "--query-name", "dev-hm-agg-v1-0-0",
    "--version", "1.0.0",
]


def test_times_and_tags() -> None:
    t = parse_time("2026-03-01T23:59:30Z")
    assert t == parse_time("2026-03-01T23:59:30") == parse_time("2026-03-01T23:59:30+00:00") == 1772409570000
    assert parse_time(str(t)) == t
    assert replay_tag(t) == "replay_20260301t235930"
    assert replay_tag(t, t + 25_000) == "replay_20260301t235930_20260301t235955"
    with pytest.raises(ReplayError):
        replay_tag(t, t)
    with pytest.raises(ReplayError):
        parse_time("yesterday")


def test_offsets_json_and_counts() -> None:
    start = {"b": {1: 5, 0: 2}, "a": {0: 0}}
    assert offsets_json(start) == '{"a":{"0":0},"b":{"0":2,"1":5}}'
    assert json.loads(offsets_json(start))["b"]["1"] == 5
    assert count_between(start, {"a": {0: 10}, "b": {0: 2, 1: 9}}) == 14
    assert count_between(start, {}) == 0


def test_args_point_the_job_at_the_replay() -> None:
    out = replay_args(
        [*ARGS, "--available-now"], table="t2", checkpoint="c2", query_name="q2", starting_offsets='{"x":{"0":1}}',
        available_now=False,
    )
    assert out[out.index("--table") + 1] == "t2" and out[out.index("--checkpoint") + 1] == "c2"
    assert out[out.index("--query-name") + 1] == "q2" and out[out.index("--starting-offsets") + 1] == '{"x":{"0":1}}'
    assert "--available-now" not in out  # an unbounded replay follows the stream
    assert out[out.index("--trigger") + 1] == "10s" and out[-2:] == ["--version", "1.0.0"]
    bounded = replay_args(ARGS, table="t", checkpoint="c", query_name="q", starting_offsets="{}",
                          available_now=False, ending_offsets='{"x":{"0":9}}')
    assert bounded[-3:] == ["--available-now", "--ending-offsets", '{"x":{"0":9}}']
    with pytest.raises(ReplayError, match="--checkpoint"):
        replay_args(["--table", "t"], table="t", checkpoint="c", query_name="q", starting_offsets="{}",
                    available_now=True)


def test_replay_job_and_table_are_named_after_the_version_and_time() -> None:
    owner = Owner(release="host-metrics", version="1.0.0")
    job = StreamingJobResource(
        name="dev-hm-agg-v1-0-0", owner=owner, version="1.0.0", entrypoint="jobs/x.py", entrypoint_digest="sha256:a",
        args=ARGS, checkpoint="/ck/dev/hm/agg/v1_0_0", strategy="blueGreen",
    )
    table = TableResource(
        name="dev_telemetry.host_metrics_1m__v1_0_0", owner=owner, columns=[Column(name="host", type="string")],
        partition_columns=[Column(name="dt", type="string")], properties={"pipectl.release": "host-metrics"},
    )
    tag = replay_tag(parse_time("2026-03-01T23:59:30Z"))
    rjob, [rtable] = replay_job(job, [table], tag=tag, starting={"t": {0: 3}}, ending=None, available_now=True)
    assert rtable.name == "dev_telemetry.host_metrics_1m__v1_0_0__replay_20260301t235930"
    assert rtable.columns == table.columns and rtable.partition_columns == table.partition_columns
    assert rtable.properties["pipectl.release"] == "host-metrics"
    assert rtable.properties["pipectl.replay.of"] == table.name
    assert rjob.name == "dev-hm-agg-v1-0-0-replay-20260301t235930"
    assert rjob.checkpoint == "/ck/dev/hm/agg/v1_0_0/replay_20260301t235930"
    assert rjob.args[rjob.args.index("--checkpoint") + 1] == rjob.checkpoint
    assert rjob.args[rjob.args.index("--table") + 1] == rtable.name
    assert rjob.args[rjob.args.index("--query-name") + 1] == rjob.name
    assert rjob.entrypoint_digest == job.entrypoint_digest and rjob.owner == owner
    # Deterministic: the same replay twice is the same job on the same checkpoint.
    assert replay_job(job, [table], tag=tag, starting={"t": {0: 3}}, ending=None, available_now=True)[0] == rjob
    with pytest.raises(ReplayError, match="does not declare"):
        replay_job(job, [], tag=tag, starting={}, ending=None, available_now=True)


def test_supports_option_reads_the_argparse_declaration() -> None:
    assert supports_option(b'p.add_argument("--ending-offsets", help="x")', "--ending-offsets")
    assert not supports_option(b'p.add_argument("--starting-offsets")', "--ending-offsets")
