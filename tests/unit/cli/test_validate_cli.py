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


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_validate_against_refuses_new_content_under_an_old_version(repo: Path) -> None:
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "root")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "1.0.0")
    job = repo / "jobs" / "host_metrics_agg.py"
    job.write_text(job.read_text() + "\n# a change without a version bump\n")
    r = run("validate", str(repo), "--against", "HEAD", cwd=repo.parent)
    assert r.returncode == 1, r.stdout
    assert "release host-metrics: version 1.0.0 deploys other content than before" in r.stderr
    assert "changed: jobs/host_metrics_agg.py" in r.stderr
    rel = repo / "releases" / "host-metrics.yaml"
    rel.write_text(rel.read_text().replace("version: 1.0.0", "version: 1.0.1"))
    r = run("validate", str(repo), "--against", "HEAD", cwd=repo.parent)
    assert r.returncode == 0, r.stderr
    r = run("validate", str(repo), "--against", "no-such-ref", cwd=repo.parent)
    assert r.returncode == 1 and "--against no-such-ref: not a commit" in r.stderr
