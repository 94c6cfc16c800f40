"""Stage naming: what the reference release becomes at each stage (pure)."""

from __future__ import annotations

from pathlib import Path

from controller.plan.desired import RolloutInputs, desired_resources, stage_context, table_catalogs, vtag
from controller.plan.resources import ViewSegment
from controller.source.validate import load_repo


def names(repo: Path, stage: str, version_serving: str | None = None) -> dict[str, list[str]]:
    snap = load_repo(repo)
    rel = snap.release("host-metrics")
    envs = {n: snap.environment(n) for n in snap.environments}
    ctx = stage_context(stage, envs)
    res = desired_resources(
        rel, ctx, lambda p: (repo / p).read_bytes(), rollout=RolloutInputs(serving_version=version_serving)
    )
    out: dict[str, list[str]] = {}
    for r in res:
        label = r.name if r.kind != "View" else f"{r.name} -> {r.target}"  # type: ignore[union-attr]
        out.setdefault(r.kind, []).append(label)
    return out


def test_table_catalogs_name_the_iceberg_tables_of_a_version(repo: Path) -> None:
    snap = load_repo(repo)
    rel = snap.release("host-metrics")  # its table is format: iceberg
    ctx = stage_context("staging", {n: snap.environment(n) for n in snap.environments})
    assert table_catalogs(ctx, rel, "1.2.0") == {"staging_telemetry.host_metrics_1m__v1_2_0": "iceberg"}
    [table] = rel.spec.tables
    hive = table.model_copy(update={"format": "parquet", "partitioning": []})
    rel = rel.model_copy(update={"spec": rel.spec.model_copy(update={"tables": [hive]})})
    assert table_catalogs(ctx, rel, "1.2.0") == {}  # a Hive table: the stage's own catalog reads it


def test_vtag() -> None:
    assert vtag("1.2.0-rc.1") == "v1_2_0_rc_1"


def test_dev_names(repo: Path) -> None:
    assert names(repo, "dev") == {
        "Database": ["dev_telemetry"],
        "Topic": ["dev.telemetry.host_metrics"],
        "Table": ["dev_telemetry.host_metrics_1m__v1_0_0"],
        "StreamingJob": ["dev-host-metrics-host-metrics-agg-v1-0-0"],
        "View": ["dev_telemetry.host_metrics -> dev_telemetry.host_metrics_1m__v1_0_0"],
        "Dag": ["host_metrics_daily__dev"],
        "Transform": ["dev_telemetry.host_metrics_daily"],
    }


def test_canary_runs_in_prods_namespace_without_views_or_dags(repo: Path) -> None:
    assert names(repo, "canary") == {
        "Database": ["telemetry"],
        "Topic": ["telemetry.host_metrics"],
        "Table": ["telemetry.host_metrics_1m__v1_0_0"],
        "StreamingJob": ["prod-host-metrics-host-metrics-agg-v1-0-0"],
    }


def test_prod_view_serves_the_serving_version(repo: Path) -> None:
    assert names(repo, "prod", version_serving="0.9.0")["View"] == [
        "telemetry.host_metrics -> telemetry.host_metrics_1m__v0_9_0"
    ]


def test_segments_and_start_offsets_pass_through(repo: Path) -> None:
    snap = load_repo(repo)
    rel = snap.release("host-metrics")
    ctx = stage_context("dev", {n: snap.environment(n) for n in snap.environments})
    seg = [
        ViewSegment(table="dev_telemetry.host_metrics_1m__v0_9_0"),
        ViewSegment(table="x.y", since="2026-01-01 00:00:00"),
    ]
    res = desired_resources(
        rel,
        ctx,
        lambda p: (repo / p).read_bytes(),
        rollout=RolloutInputs(
            view_segments={"telemetry.host_metrics": seg}, start_offsets={"host-metrics-agg": '{"t":{"0":5}}'}
        ),
    )
    job = next(r for r in res if r.kind == "StreamingJob")
    assert job.args[job.args.index("--starting-offsets") + 1] == '{"t":{"0":5}}'  # type: ignore[union-attr]
    view = next(r for r in res if r.kind == "View")
    assert view.segments == seg  # type: ignore[union-attr]


def test_canary_leaves_its_targets_topics_alone_once_the_target_is_live(repo: Path) -> None:
    snap = load_repo(repo)
    rel = snap.release("host-metrics")
    ctx = stage_context("canary", {n: snap.environment(n) for n in snap.environments})
    res = desired_resources(
        rel, ctx, lambda p: (repo / p).read_bytes(), rollout=RolloutInputs(declare_topics=False)
    )
    assert [r.kind for r in res if r.kind == "Topic"] == []


REGISTRY_URL = "http://127.0.0.1:8088/schema-registry"


def hand_registry(repo: Path, env: str) -> None:
    """Opt ``env`` in: ``spec.schemaRegistry`` under its spec."""
    path = repo / "environments" / f"{env}.yaml"
    path.write_text(path.read_text().replace("spec:\n", f"spec:\n  schemaRegistry: {{url: {REGISTRY_URL}}}\n", 1))


def job_args(repo: Path, stage: str) -> list[str]:
    snap = load_repo(repo)
    ctx = stage_context(stage, {n: snap.environment(n) for n in snap.environments})
    res = desired_resources(snap.release("host-metrics"), ctx, lambda p: (repo / p).read_bytes())
    job = next(r for r in res if r.kind == "StreamingJob")
    return list(job.args)  # type: ignore[union-attr]


def test_an_environment_hands_its_registry_to_the_jobs_it_starts(repo: Path) -> None:
    assert "--schema-registry" not in job_args(repo, "dev")  # opt-in: nothing without the field
    hand_registry(repo, "dev")
    args = job_args(repo, "dev")
    # the subject is the manifest's topic name, without the stage's prefix (the registry's naming)
    i = args.index("--schema-registry")
    assert args[i : i + 4] == ["--schema-registry", REGISTRY_URL, "--subject", "telemetry.host_metrics-value"]
    assert args[args.index("--topic") + 1] == "dev.telemetry.host_metrics"
    # no secret in the arguments: the token reaches the job through its environment only
    assert not [a for a in args if "token" in a.lower() or a.startswith(("pct_", "pcr_"))]
    assert "--schema-registry" not in job_args(repo, "staging")  # per environment


def test_a_canary_stage_uses_its_targets_registry(repo: Path) -> None:
    hand_registry(repo, "prod")
    assert "--schema-registry" in job_args(repo, "prod")
    assert "--schema-registry" in job_args(repo, "canary")


def test_no_registry_args_for_a_source_without_a_value_schema(repo: Path) -> None:
    hand_registry(repo, "dev")
    rel = repo / "releases" / "host-metrics.yaml"
    text = rel.read_text()
    assert text.count("valueSchema: host-metric-event") == 1
    rel.write_text(text.replace("      valueSchema: host-metric-event\n", ""))
    assert "--schema-registry" not in job_args(repo, "dev")
