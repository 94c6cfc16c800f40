"""A one-shot verb's stdout is its output: logs go to stderr, warnings and errors only unless
``PIPECTL_LOG_LEVEL`` asks for more (``controller/cli/main.py``). Before, the leader lock's
``leader_acquired`` line landed on stdout and broke ``-o json`` for backfill and replay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _backfill(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Takes the leader lock (logged), then fails on the stage's missing Airflow password."""
    base = {k: v for k, v in os.environ.items() if k not in ("PIPECTL_AIRFLOW_PASSWORD", "PIPECTL_LOG_LEVEL")}
    # Unit tests run before the stack is up, so no stack info file names a DAG folder.
    base["PIPECTL_AIRFLOW_DAGS_FOLDER"] = str(tmp_path / "dags")
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", "backfill", "host-metrics", "--stage", "dev",
         "--repo", str(ROOT / "manifests"), "--state", f"sqlite:///{tmp_path / 'state.db'}",
         "--from", "2026-01-01", "--to", "2026-01-01", "-o", "json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**base, **env},
    )


@pytest.mark.parametrize("level", ["", "info"])
def test_a_verbs_logs_go_to_stderr_and_only_warnings_by_default(tmp_path: Path, level: str) -> None:
    r = _backfill(tmp_path, **({"PIPECTL_LOG_LEVEL": level} if level else {}))
    assert r.returncode == 1 and r.stdout == ""
    assert "PIPECTL_AIRFLOW_PASSWORD is not set" in r.stderr
    assert ("leader_acquired" in r.stderr) == (level == "info")
