"""`pipectl validate` as a user runs it: exit codes, messages on stderr, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_repo_is_valid() -> None:
    r = run("validate", "manifests")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "valid"


def test_invalid_repo_exit_1_without_traceback(repo: Path) -> None:
    rel = repo / "releases" / "host-metrics.yaml"
    rel.write_text(
        rel.read_text().replace("partitions: 6", "partitions: -6").replace("version: 1.0.0", "version: 1")
    )
    r = run("validate", str(repo), cwd=repo.parent)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        "repo/releases/host-metrics.yaml:10: spec.version: invalid version '1': expected semantic version MAJOR.MINOR.PATCH",
        "repo/releases/host-metrics.yaml:19: spec.topics[0].partitions: must be > 0 (got -6)",
        "2 problem(s) found",
    ]


def test_missing_path() -> None:
    r = run("validate", "does-not-exist")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == "does-not-exist: no such file or directory"
