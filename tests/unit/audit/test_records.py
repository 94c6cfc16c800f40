"""The rollback record lists what the restore proved and what it stopped (``rollback_details``), and
``build_record`` carries a run's details into the hash-chained record."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.audit.records import RunFacts, build_record, restored_item, rollback_details
from controller.model.manifest import PipelineRelease
from controller.plan.resources import (
    Column,
    DagResource,
    DatabaseResource,
    StreamingJobResource,
    TableResource,
    TopicResource,
    ViewResource,
    ViewSegment,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)

RELEASE = PipelineRelease.model_validate(
    {
        "apiVersion": "pipectl.dev/v1alpha1",
        "kind": "PipelineRelease",
        "metadata": {"name": "hm"},
        "spec": {"version": "2.0.0", "rollout": {"stages": ["prod"]}},
    }
)


def proved() -> list[object]:
    return [
        DatabaseResource(name="telemetry"),
        TopicResource(
            name="telemetry.host_metrics", partitions=2, replication_factor=1, config={"retention.ms": "1"}
        ),
        TableResource(
            name="telemetry.host_metrics_1m__v1_0_0",
            columns=[Column(name="host", type="string")],
            properties={"pipectl.version": "1.0.0"},
        ),
        StreamingJobResource(
            name="prod-hm-agg-v1-0-0",
            version="1.0.0",
            entrypoint="jobs/agg.py",
            entrypoint_digest="sha256:aa",
            checkpoint="/c",
            strategy="blueGreen",
        ),
        ViewResource(
            name="telemetry.host_metrics",
            target="telemetry.host_metrics_1m__v1_0_0",
            segments=[ViewSegment(table="telemetry.host_metrics_1m__v1_0_0")],
        ),
        DagResource(
            name="hm_daily__prod", file_name="hm_daily__prod.py", source_digest="sha256:bb", version="1.0.0"
        ),
    ]


def test_rollback_details_list_every_proved_item_and_the_stopped_jobs() -> None:
    d = rollback_details("gate", "2.0.0", "1.0.0", proved(), ["prod-hm-agg-v2-0-0"])
    assert (d["trigger"], d["from"], d["to"], d["stopped"]) == (
        "gate",
        "2.0.0",
        "1.0.0",
        ["prod-hm-agg-v2-0-0"],
    )
    items = {(i["kind"], i["name"]): i for i in d["restored"]}
    assert set(items) == {
        ("database", "telemetry"),
        ("topic", "telemetry.host_metrics"),
        ("table", "telemetry.host_metrics_1m__v1_0_0"),
        ("streamingJob", "prod-hm-agg-v1-0-0"),
        ("view", "telemetry.host_metrics"),
        ("dag", "hm_daily__prod"),
    }
    assert items[("streamingJob", "prod-hm-agg-v1-0-0")]["version"] == "1.0.0"
    assert items[("streamingJob", "prod-hm-agg-v1-0-0")]["running"] is True
    assert items[("view", "telemetry.host_metrics")]["target"] == "telemetry.host_metrics_1m__v1_0_0"
    assert items[("view", "telemetry.host_metrics")]["segments"] == [
        {"table": "telemetry.host_metrics_1m__v1_0_0", "since": None}
    ]
    assert items[("dag", "hm_daily__prod")]["version"] == "1.0.0"
    assert items[("topic", "telemetry.host_metrics")] == {
        "kind": "topic",
        "name": "telemetry.host_metrics",
        "partitions": 2,
        "config": {"retention.ms": "1"},
    }
    assert items[("table", "telemetry.host_metrics_1m__v1_0_0")]["version"] == "1.0.0"


def test_nothing_proved_lists_nothing_restored() -> None:
    d = rollback_details("postPromotion", "2.0.0", None, None, ["prod-hm-agg-v2-0-0"])
    assert d["restored"] == [] and d["to"] is None and d["stopped"] == ["prod-hm-agg-v2-0-0"]


def test_build_record_carries_the_details() -> None:
    run = RunFacts("rollback", "r1", "abc", "rolledBack", NOW, NOW, "pipectl")
    run.details = rollback_details("gate", "2.0.0", "1.0.0", proved(), [])
    rec = build_record(RELEASE, "prod", run, lambda _p: b"")
    assert rec.details == run.details
    assert rec.model_dump(mode="json")["details"]["restored"][0] == restored_item(proved()[0])
    # a run without details records none (every other kind, unchanged)
    plain = build_record(
        RELEASE, "prod", RunFacts("apply", "r2", None, "succeeded", NOW, NOW, "p"), lambda _p: b""
    )
    assert plain.details == {}
