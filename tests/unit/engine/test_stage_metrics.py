"""The per-pass streaming metrics (``controller.engine.observe.StageMetrics``) through the real
Reconciler over ``world.py``'s fakes: lag, and the undecodable records a job's status file reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.obs import metrics
from tests.unit.engine.world import RELEASE, World, job, release_yaml, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")

UNDECODABLE = "pipectl_streaming_undecodable_records"


def sample(name: str, stage: str) -> float | None:
    labels = {"release": RELEASE, "stage": stage, "streaming_job": job(stage, "1.0.0")}
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_undecodable_records_are_exported_per_job_once_the_job_reports_them(tmp_path: Path) -> None:
    metrics.clear_leader_series()
    w = World(tmp_path)
    w.commit({**repo_files(), f"releases/{RELEASE}.yaml": release_yaml("1.0.0")})
    w.promote_everywhere("1.0.0")
    assert sample("pipectl_streaming_lag_seconds", "dev") is not None
    assert sample(UNDECODABLE, "dev") is None  # the job reports no count: no series
    w.at("dev").spark.undecodable[job("dev", "1.0.0")] = 4
    w.clock.advance(30)
    w.reconcile()
    assert sample(UNDECODABLE, "dev") == 4.0
    assert sample(UNDECODABLE, "staging") is None
