"""What the manifest's per-stage and per-environment settings do to the desired resources (pure):
``rollout.overrides.<stage>`` (topics' partitions, replication factor, config; Spark conf) at every
stage of the reference rollout, the environment's ``spark.conf`` and ``spark.checkpointRoot``, and
``dags[].schedule``."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.plan.desired import desired_resources, stage_context
from controller.plan.resources import DagResource, StreamingJobResource, TopicResource
from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"
TOPIC = "telemetry.host_metrics"

OVERRIDES = """    overrides:
      dev:
        topics:
          telemetry.host_metrics: {partitions: 2, config: {retention.ms: 3600000}}
        conf: {spark.sql.shuffle.partitions: 2}
      staging:
        topics:
          telemetry.host_metrics: {replicationFactor: 1, config: {cleanup.policy: compact}}
      canary:
        conf: {spark.sql.shuffle.partitions: 8, spark.speculation: true}
      prod:
        topics:
          telemetry.host_metrics: {partitions: 12, replicationFactor: 3}
        conf: {spark.sql.shuffle.partitions: 16}
"""

# (partitions, replication factor, config, the job's conf) each stage gets; the release itself says
# 6 partitions, RF 1, retention 7 days + delete, and shuffle partitions 4.
EXPECTED: dict[str, tuple[int, int, dict[str, str], dict[str, str]]] = {
    "dev": (
        2,
        1,
        {"retention.ms": "3600000", "cleanup.policy": "delete"},
        {"spark.sql.shuffle.partitions": "2"},
    ),
    "staging": (
        6,
        1,
        {"retention.ms": "604800000", "cleanup.policy": "compact"},
        {"spark.sql.shuffle.partitions": "4"},
    ),
    # the canary runs on prod's topics (prod's overrides), with its own conf
    "canary": (
        12,
        3,
        {"retention.ms": "604800000", "cleanup.policy": "delete"},
        {"spark.sql.shuffle.partitions": "8", "spark.speculation": "true"},
    ),
    "prod": (
        12,
        3,
        {"retention.ms": "604800000", "cleanup.policy": "delete"},
        {"spark.sql.shuffle.partitions": "16"},
    ),
}


def edit(root: Path, old: str, new: str, file: str = REL) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def resources(
    repo: Path, stage: str
) -> tuple[list[TopicResource], list[StreamingJobResource], list[DagResource]]:
    snap = load_repo(repo)
    assert snap.problems == []
    envs = {n: snap.environment(n) for n in snap.environments}
    out = desired_resources(
        snap.release("host-metrics"),
        stage_context(stage, envs),
        lambda p: (repo / p).read_bytes(),
        "/state/ckpt",
    )
    return (
        [r for r in out if isinstance(r, TopicResource)],
        [r for r in out if isinstance(r, StreamingJobResource)],
        [r for r in out if isinstance(r, DagResource)],
    )


@pytest.mark.parametrize("stage", ["dev", "staging", "canary", "prod"])
def test_overrides_apply_per_stage(repo: Path, stage: str) -> None:
    edit(repo, "    rollback:\n      automatic: true\n", "    rollback:\n      automatic: true\n" + OVERRIDES)
    topics, jobs, _ = resources(repo, stage)
    partitions, rf, config, conf = EXPECTED[stage]
    [topic] = topics
    assert (topic.partitions, topic.replication_factor, topic.config) == (partitions, rf, config)
    [job] = jobs
    assert job.conf == conf


@pytest.mark.parametrize("stage", ["dev", "staging", "canary", "prod"])
def test_without_overrides_every_stage_gets_the_release_as_written(repo: Path, stage: str) -> None:
    topics, jobs, _ = resources(repo, stage)
    [topic], [job] = topics, jobs
    assert (topic.partitions, topic.replication_factor) == (6, 1)
    assert topic.config == {"retention.ms": "604800000", "cleanup.policy": "delete"}
    assert job.conf == {"spark.sql.shuffle.partitions": "4"}


def test_environment_spark_conf_is_the_least_specific_layer(repo: Path) -> None:
    edit(
        repo,
        "    master: local[2]",
        "    master: local[2]\n    conf: {spark.sql.session.timeZone: UTC, spark.sql.shuffle.partitions: 1}",
        "environments/dev.yaml",
    )
    _, [job], _ = resources(repo, "dev")
    # the job's own shuffle partitions (4) win over the environment's (1)
    assert job.conf == {"spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4"}
    edit(repo, "    rollback:\n      automatic: true\n", "    rollback:\n      automatic: true\n" + OVERRIDES)
    _, [job], _ = resources(repo, "dev")
    assert job.conf == {"spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "2"}
    _, [job], _ = resources(repo, "staging")
    assert job.conf == {"spark.sql.shuffle.partitions": "4"}, "another environment's conf stays there"


def test_checkpoint_root_of_the_environment_places_every_checkpoint(repo: Path) -> None:
    _, [job], _ = resources(repo, "prod")
    assert job.checkpoint == "/state/ckpt/prod/host-metrics/host-metrics-agg/v1_0_0", (
        "the controller's default"
    )
    edit(
        repo,
        "    master: local[2]",
        "    master: local[2]\n    checkpointRoot: hdfs://nn/pipectl/",
        "environments/prod.yaml",
    )
    for stage in ("prod", "canary"):  # the canary runs in prod's namespace, on prod's Spark
        _, [job], _ = resources(repo, stage)
        assert job.checkpoint == "hdfs://nn/pipectl/prod/host-metrics/host-metrics-agg/v1_0_0"
        assert job.args[job.args.index("--checkpoint") + 1] == job.checkpoint
    _, [job], _ = resources(repo, "dev")
    assert job.checkpoint.startswith("/state/ckpt/dev/")


@pytest.mark.parametrize(
    ("line", "managed", "schedule"),
    [
        ('      schedule: "@daily"\n', True, "@daily"),
        ('      schedule: "0  6 * * 1-5"\n', True, "0 6 * * 1-5"),
        ("      schedule: null\n", True, None),
        ("", False, None),
    ],
)
def test_dag_schedule_reaches_the_desired_dag(
    repo: Path, line: str, managed: bool, schedule: str | None
) -> None:
    edit(repo, '      schedule: "@daily"\n', line)
    for stage in ("dev", "prod"):
        _, _, [dag] = resources(repo, stage)
        assert (dag.schedule_managed, dag.schedule) == (managed, schedule)
