"""``pipectl transform compile|run`` offline: compiled SQL for a stage, and the checks made before a
run touches a backend."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from controller.cli.transform import app

EXAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "transforms" / "host_metrics_daily.sql"


def test_compile_prints_the_sql_for_the_stage(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text(EXAMPLE.read_text())
    r = CliRunner().invoke(app, ["compile", "host-metrics", "--stage", "dev", "--repo", str(repo)])
    assert r.exit_code == 0, r.output
    assert "--   ref('telemetry.host_metrics_1m') -> dev_telemetry.host_metrics [table v1_0_0]" in r.output
    assert 'FROM "hive"."dev_telemetry"."host_metrics"' in r.output
    r = CliRunner().invoke(
        app, ["compile", "host-metrics", "--stage", "prod", "--repo", str(repo), "-o", "json"]
    )
    [out] = json.loads(r.output)
    assert out["name"] == "telemetry.host_metrics_daily"
    assert out["lineage"]["hive:telemetry.host_metrics_daily.day"] == ["hive:telemetry.host_metrics.dt"]


def test_compile_lists_sql_problems(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text("SELECT a\nFROM raw.t\n")
    r = CliRunner().invoke(app, ["compile", "host-metrics", "--stage", "dev", "--repo", str(repo)])
    assert r.exit_code == 1
    assert "transforms/host_metrics_daily.sql:2: table raw.t is referenced without ref()" in r.output


def test_run_refuses_what_it_cannot_run(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text(EXAMPLE.read_text())
    r = CliRunner().invoke(app, ["run", "host-metrics", "--stage", "canary", "--repo", str(repo)])
    assert r.exit_code == 1 and "canary stage" in r.output
    r = CliRunner().invoke(app, ["run", "host-metrics", "--stage", "dev", "-t", "x.y", "--repo", str(repo)])
    assert r.exit_code == 1 and "has no transform 'x.y'" in r.output
