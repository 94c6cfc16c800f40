"""`pipectl approve` and `pipectl token`: no claimed names; the operator path (`--state --user`)
records ``local:<os user>`` against the commit the controller observed, with the same checks."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

from controller.store.db import Store

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_as_is_refused_and_tokens_are_shown_once(tmp_path: Path) -> None:
    r = run("approve", "host-metrics", "--stage", "prod", "--as", "alice")
    assert r.returncode == 1 and "--as is gone" in r.stderr
    state = f"sqlite:///{tmp_path / 's.db'}"
    r = run("token", "create", "--user", "alice", "--groups", "sre", "--state", state)
    assert r.returncode == 0 and r.stdout.startswith("pct_"), r.stderr
    token = r.stdout.strip()
    listed = run("token", "list", "-o", "json", "--state", state)
    assert token not in listed.stdout and json.loads(listed.stdout)[0]["groups"] == ["sre"]
    tid = json.loads(listed.stdout)[0]["id"]
    assert run("token", "revoke", tid, "--state", state).returncode == 0
    assert run("token", "revoke", tid, "--state", state).returncode == 1


def test_the_operator_path_records_the_local_user(repo: Path, tmp_path: Path) -> None:
    prod = repo / "environments" / "prod.yaml"
    prod.write_text(prod.read_text() + "  approvers: {users: [alice]}\n")
    _git(repo.parent, "init", "-q", "-b", "main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "1.0.0")
    commit = _git(repo, "rev-parse", "HEAD")
    db = tmp_path / "state" / "s.db"
    store = Store(f"sqlite:///{db}")
    store.put_status("host-metrics", {"version": "1.0.0", "observedCommit": commit, "stages": {}})
    base = ["--state", f"sqlite:///{db}", "--user", "--repo", str(repo)]

    r = run("approve", "host-metrics", "--stage", "staging", *base)
    assert r.returncode == 0, r.stderr
    who = f"local:{getpass.getuser()}"
    assert "approved host-metrics 1.0.0 (revision sha256:" in r.stdout and f"as {who}" in r.stdout
    approvals = [x for x in store.audit_rows("host-metrics") if x["kind"] == "approval"]
    assert len(approvals) == 1 and json.loads(approvals[0]["record"])["actor"] == who

    r = run("approve", "host-metrics", "--stage", "prod", *base)  # prod lists alice only
    assert r.returncode == 1 and f"{who} may not approve stage prod" in r.stderr
    r = run("approve", "host-metrics", "--stage", "staging", "--version", "2.0.0", *base)
    assert r.returncode == 1 and "at version 1.0.0 now" in r.stderr
    r = run("approve", "host-metrics", "--stage", "qa", *base)
    assert r.returncode == 1 and "'qa' is not a stage of host-metrics" in r.stderr
