"""A transform of a release that ``dependsOn`` another resolves, at each stage, the upstream version
that stage serves (``StageOps.served_upstream``), not the upstream's committed version: through the
real ``Reconciler`` over the fakes of ``world.py``, with the controller's pass and ``pipectl plan``'s
preview agreeing."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.engine.manual import preview
from controller.model.reasons import Phase
from controller.plan.resources import ResourceKind, TransformResource
from tests.unit.engine.world import DAILY, DAILY_SQL, DAILY_YAML, RELEASE, World, release_yaml, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")


def live_upstream(w: World, inst: str) -> list[str]:
    prefix = "" if inst == "prod" else f"{inst}_"
    t = w.at(inst).transforms.get(ResourceKind.TRANSFORM, f"{prefix}reports.metrics_daily")
    assert isinstance(t, TransformResource), inst
    return [u.digest for u in t.upstream]


def test_each_stage_resolves_the_upstream_version_it_serves(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.commit({"releases/daily.yaml": DAILY_YAML, "transforms/metrics_daily.sql": DAILY_SQL})
    w.run_until(lambda: w.succeeded_everywhere("1.0.0", DAILY), name=DAILY)

    # metrics 1.1.0 Succeeded at dev; staging is deploying it beside blue (the view still on 1.0.0)
    w.commit({"jobs/metrics_agg.py": "print('aggregate v2')\n", f"releases/{RELEASE}.yaml": release_yaml("1.1.0")})
    w.run_until(lambda: w.stage("staging").version == "1.1.0")
    assert w.stage("dev").phase is Phase.SUCCEEDED
    assert w.stage("staging").phase in (Phase.PROGRESSING, Phase.VERIFYING)

    assert w.snap is not None
    staging = preview(w.reconciler, w.snap, DAILY, "staging")
    assert staging.actions == []  # nothing to change: staging still serves metrics 1.0.0
    dev = preview(w.reconciler, w.snap, DAILY, "dev")
    [action] = [a for a in dev.actions if a.kind == ResourceKind.TRANSFORM]
    assert isinstance(action.desired, TransformResource)
    assert [u.digest for u in action.desired.upstream] == ["dev_telemetry.metrics_1m__v1_1_0@1.1.0"]

    assert not w.reconcile(DAILY).errors  # the pass agrees: dev moves, staging and prod stay
    assert live_upstream(w, "dev") == ["dev_telemetry.metrics_1m__v1_1_0@1.1.0"]
    assert live_upstream(w, "staging") == ["staging_telemetry.metrics_1m__v1_0_0@1.0.0"]
    assert live_upstream(w, "prod") == ["telemetry.metrics_1m__v1_0_0@1.0.0"]
