"""`pipectl apply` changes a stage in its own process, so it takes the controller's leader lock
first (``controller.cli.lock``): refused, saying who holds it, while a controller or another apply
does; the lock is let go afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from controller.cli.lock import leader_lock
from controller.engine.leader import FileLockElector

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIPECTL_SERVER", "PIPECTL_TOKEN")}
    env.update(PIPECTL_CONFIG=str(tmp / "no-config.yaml"), PIPECTL_LEADER_ELECTION="file")
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_second_apply_while_the_lock_is_held_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = f"sqlite:///{tmp_path / 'state' / 's.db'}"
    ran: list[str] = []
    with leader_lock(state, "apply", "wait"):  # the first apply
        with pytest.raises(typer.Exit) as e, leader_lock(state, "apply", "commit it instead"):
            ran.append("second")
        assert e.value.exit_code == 1
    assert ran == []
    err = capsys.readouterr().err
    assert "pipectl apply: the leader lock is held (pipectl-apply-" in err and "commit it instead" in err
    with leader_lock(state, "apply", "wait"):  # let go: the next one gets it
        ran.append("third")
    assert ran == ["third"]


def test_apply_is_refused_while_a_controller_holds_the_lock(repo: Path, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state' / 's.db'}"
    held = FileLockElector(tmp_path / "state" / "controller.lock", identity="ctl-host-1")
    assert held.acquire()
    try:
        r = run("apply", "host-metrics", "--stage", "dev", "--state", state, "--repo", str(repo), tmp=tmp_path)
    finally:
        held.release()
    assert r.returncode == 1, r.stderr
    assert "pipectl apply: the leader lock is held (ctl-host-1" in r.stderr, r.stderr
    assert "let the controller apply it" in r.stderr
    assert not (tmp_path / "state" / "s.db").exists()  # refused before anything was opened
