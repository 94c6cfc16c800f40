"""Issue #15 point 3: every manifest field does what it says or is refused with a clear message at
its file, line and field path (schedules, spark deployMode/conf/checkpointRoot, removed fields,
stage overrides). What the accepted fields do is tested in tests/unit/plan/test_overrides.py and
the adapters' tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.model.manifest import KINDS
from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"
DEV = "environments/dev.yaml"
SHARED_EXAMPLE = Path("/work/shared/design/example-repo")


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_repo(root).problems]


def edit(root: Path, old: str, new: str, file: str = REL) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            '"61 * * * *"',
            "invalid schedule '61 * * * *': expected a 5-field cron expression (minute hour day-of-month "
            "month day-of-week, e.g. '*/15 * * * *'), an Airflow preset such as '@daily', or null",
        ),
        (
            '"0 0 * * * *"',
            "invalid schedule '0 0 * * * *': expected a 5-field cron expression (minute hour day-of-month "
            "month day-of-week, e.g. '*/15 * * * *'), an Airflow preset such as '@daily', or null",
        ),
        (
            '"@fortnightly"',
            "unknown schedule preset '@fortnightly' (expected one of: @hourly, @daily, @weekly, @monthly, "
            "@quarterly, @yearly, @once, @continuous, a cron expression or null)",
        ),
    ],
)
def test_bad_dag_schedule_names_file_line_and_field(repo: Path, schedule: str, message: str) -> None:
    edit(repo, 'schedule: "@daily"', f"schedule: {schedule}")
    assert problems(repo) == [f"{REL}:55: spec.dags[0].schedule: {message}"]


@pytest.mark.parametrize(
    ("written", "managed", "value"),
    [
        ('"@daily"', True, "@daily"),
        ('"@hourly"', True, "@hourly"),
        ('"*/15   6-18 * * 1-5"', True, "*/15 6-18 * * 1-5"),
        ("null", True, None),
        ('"None"', True, None),
        (None, False, None),
    ],
)
def test_dag_schedule_accepted_forms(
    repo: Path, written: str | None, managed: bool, value: str | None
) -> None:
    if written is None:
        edit(repo, '      schedule: "@daily"\n', "")
    else:
        edit(repo, 'schedule: "@daily"', f"schedule: {written}")
    snap = load_repo(repo)
    assert snap.problems == []
    dag = snap.release("host-metrics").spec.dags[0]
    assert (dag.schedule_managed, dag.schedule) == (managed, value)


def test_transform_schedule_is_removed_with_a_hint(repo: Path) -> None:
    edit(repo, "      materialized: table\n", '      materialized: table\n      schedule: "@daily"\n')
    assert problems(repo) == [
        f"{REL}:60: spec.transforms[0].schedule: removed: a transform runs when a DAG calls `pipectl "
        "transform run`; set the schedule on that DAG (dags[].schedule)"
    ]


def test_git_revert_is_removed_with_a_hint(repo: Path) -> None:
    edit(repo, "      automatic: true", "      automatic: true\n      gitRevert: true")
    assert problems(repo) == [
        f"{REL}:82: spec.rollout.rollback.gitRevert: removed: pipectl does not commit reverts to the "
        "manifest repository; revert the failed change in git yourself (the rollback record names it)"
    ]


def test_other_unknown_fields_stay_unknown(repo: Path) -> None:
    edit(repo, "      automatic: true", "      automatic: true\n      gitRevrt: true")
    assert problems(repo) == [f"{REL}:82: spec.rollout.rollback.gitRevrt: unknown field"]


def test_cluster_deploy_mode_is_refused_without_a_standalone_master(repo: Path) -> None:
    edit(repo, "    master: local[2]", "    master: local[2]\n    deployMode: cluster", DEV)
    assert problems(repo) == [
        f"{DEV}:23: spec.spark.deployMode: deployMode 'cluster' needs a Spark standalone master "
        "(spark://host:port), not 'local[2]': pipectl drives no other cluster manager"
    ]


def test_cluster_deploy_mode_on_a_standalone_master_is_accepted(repo: Path) -> None:
    edit(repo, "    master: local[2]", "    master: spark://127.0.0.1:7077\n    deployMode: cluster", DEV)
    assert problems(repo) == []


def test_unknown_deploy_mode_is_refused_naming_the_supported_modes(repo: Path) -> None:
    edit(repo, "    master: local[2]", "    master: local[2]\n    deployMode: yarn", DEV)
    assert problems(repo) == [
        f"{DEV}:23: spec.spark.deployMode: deployMode 'yarn' is not supported: pipectl runs streaming "
        "jobs with deployMode client or cluster"
    ]


def test_client_deploy_mode_conf_and_checkpoint_root_are_accepted(repo: Path) -> None:
    edit(
        repo,
        "    master: local[2]",
        "    master: local[2]\n    deployMode: client\n    checkpointRoot: /data/ckpt/\n"
        "    conf:\n      spark.sql.session.timeZone: UTC\n      spark.speculation: false",
        DEV,
    )
    snap = load_repo(repo)
    assert snap.problems == []
    spark = snap.environment("dev").spec.spark
    assert spark is not None
    assert (spark.deploy_mode, spark.checkpoint_root) == ("client", "/data/ckpt")
    assert spark.conf == {"spark.sql.session.timeZone": "UTC", "spark.speculation": "false"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "    checkpointRoot: ckpt/relative",
            "spec.spark.checkpointRoot: checkpointRoot 'ckpt/relative' must be an absolute path or a URI "
            "such as hdfs://namenode/checkpoints",
        ),
        (
            "    conf: {not.spark: x}",
            "spec.spark.conf: invalid Spark conf key 'not.spark': must match spark.[A-Za-z0-9_.-]+",
        ),
    ],
)
def test_bad_spark_endpoint_fields(repo: Path, line: str, message: str) -> None:
    edit(repo, "    master: local[2]", f"    master: local[2]\n{line}", DEV)
    assert problems(repo) == [f"{DEV}:23: {message}"]


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9083", "thrift://127.0.0.1", "thrift://h:70000", "127.0.0.1:9083"])
def test_bad_hive_metastore_uri_names_file_line_and_field(repo: Path, uri: str) -> None:
    edit(repo, '    databasePrefix: "dev_"', f'    databasePrefix: "dev_"\n    metastoreUri: "{uri}"', DEV)
    assert problems(repo) == [
        f"{DEV}:13: spec.hive.metastoreUri: invalid metastoreUri {uri!r}: expected thrift://host:port"
    ]


def test_hive_metastore_uri_is_accepted_and_optional(repo: Path) -> None:
    assert load_repo(repo).environment("dev").spec.hive.metastore_uri is None  # type: ignore[union-attr]
    edit(repo, '    databasePrefix: "dev_"', '    databasePrefix: "dev_"\n    metastoreUri: thrift://127.0.0.1:9083', DEV)
    snap = load_repo(repo)
    assert snap.problems == []
    hive = snap.environment("dev").spec.hive
    assert hive is not None and hive.metastore_uri == "thrift://127.0.0.1:9083"


OVERRIDES = "    rollback:\n      automatic: true\n    overrides:\n"


def test_override_of_an_unknown_topic_is_reported(repo: Path) -> None:
    edit(
        repo,
        "    rollback:\n      automatic: true",
        OVERRIDES
        + "      prod:\n        topics:\n          telemetry.host_metric:\n            partitions: 12\n",
    )
    assert problems(repo) == [
        f"{REL}:85: spec.rollout.overrides.prod.topics.telemetry.host_metric: unknown topic "
        "'telemetry.host_metric' (not in spec.topics)",
    ]


def test_override_of_an_unknown_topic_field_is_reported(repo: Path) -> None:
    edit(
        repo,
        "    rollback:\n      automatic: true",
        OVERRIDES
        + "      prod:\n        topics:\n          telemetry.host_metrics:\n            partitons: 12\n",
    )
    assert problems(repo) == [
        f"{REL}:86: spec.rollout.overrides.prod.topics.telemetry.host_metrics.partitons: unknown field"
    ]


def test_topic_override_under_a_canary_stage_points_at_its_target(repo: Path) -> None:
    edit(
        repo,
        "    rollback:\n      automatic: true",
        OVERRIDES
        + "      canary:\n        topics:\n          telemetry.host_metrics:\n            partitions: 12\n",
    )
    assert problems(repo) == [
        f"{REL}:85: spec.rollout.overrides.canary.topics.telemetry.host_metrics: canary stage 'canary' "
        "uses 'prod''s topics: override them under 'prod'"
    ]


def test_override_values_are_checked(repo: Path) -> None:
    edit(
        repo,
        "    rollback:\n      automatic: true",
        OVERRIDES + "      dev:\n        conf: {bad: 1}\n        topics:\n          telemetry.host_metrics:\n"
        "            replicationFactor: 0\n",
    )
    assert problems(repo) == [
        f"{REL}:84: spec.rollout.overrides.dev.conf: invalid Spark conf key 'bad': must match "
        "spark.[A-Za-z0-9_.-]+",
        f"{REL}:87: spec.rollout.overrides.dev.topics.telemetry.host_metrics.replicationFactor: must be > 0 "
        "(got 0)",
    ]


@pytest.mark.skipif(not SHARED_EXAMPLE.is_dir(), reason="the design example repo is not on this machine")
def test_the_shared_design_example_manifests_are_accepted_as_written() -> None:
    files = sorted(SHARED_EXAMPLE.glob("*/*.yaml"))
    assert len(files) == 5
    for path in files:
        doc = yaml.safe_load(path.read_text())
        KINDS[doc["kind"]].model_validate(doc)
