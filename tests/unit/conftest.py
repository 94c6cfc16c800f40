"""Shared fixtures for unit tests: a minimal valid manifest repository built in a temp dir."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from controller.obs import logging as obs_logging

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
MODELINE = "# yaml-language-server: $schema="


@pytest.fixture(autouse=True)
def _fresh_secret_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered for redaction are process-wide (a controller resolves each once); a test
    that resolved one (say "admin" from a password file) must not redact the next test's output.
    Nor does the caller's environment: `make test` exports PIPECTL_AIRFLOW_PASSWORD for the stack,
    and a unit test that expects "admin" in a log line would see it redacted."""
    monkeypatch.setattr(obs_logging, "_REGISTERED", set())
    for name in list(os.environ):
        if obs_logging._SECRET_ENV.fullmatch(name) and not obs_logging._NOT_SECRET_ENV.fullmatch(name):
            monkeypatch.delenv(name)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the example repo's manifests, with stub pipeline files (valid Python/SQL), without
    the manifests' yaml-language-server modelines (expected problems name lines as they were)."""
    root = tmp_path / "repo"
    for d in ("releases", "environments", "schemas"):
        shutil.copytree(MANIFESTS / d, root / d)
    (root / "releases" / "request-latency.yaml").unlink()  # the second example: tests of its own
    for path in root.glob("*/*.yaml"):  # the editor modeline (line 1) off: tests count lines without it
        text = path.read_text()
        if text.startswith(MODELINE):
            path.write_text(text.split("\n", 1)[1])
    for rel, text in {
        "jobs/host_metrics_agg.py": "print('job')\n",
        "dags/host_metrics_daily.py": "DAG = None\n",
        "transforms/host_metrics_daily.sql": "SELECT 1 AS one\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root
