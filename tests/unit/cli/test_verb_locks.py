"""``pipectl backfill`` and ``pipectl replay`` change stages from their own process, so they take the
controller's leader lock first (``controller.cli.lock``) and are refused, saying who holds it and
what to do, while a controller (or another verb) holds it; nothing is opened before the lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from controller.engine.leader import FileLockElector

ARGS = {
    "backfill": ["backfill", "host-metrics", "--stage", "dev", "--from", "2026-03-01", "--to", "2026-03-02"],
    "replay": ["replay", "host-metrics", "--stage", "dev", "--from-time", "2026-03-01T00:00:00Z"],
}


@pytest.mark.parametrize("verb", ["backfill", "replay"])
def test_verb_is_refused_while_a_controller_holds_the_lock(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPECTL_LEADER_ELECTION", "file")
    state = f"sqlite:///{tmp_path / 'state' / 's.db'}"
    held = FileLockElector(tmp_path / "state" / "controller.lock", identity="ctl-host-1")
    assert held.acquire()
    try:
        r = CliRunner().invoke(app, [*ARGS[verb], "--repo", str(tmp_path / "no-repo"), "--state", state])
    finally:
        held.release()
    assert r.exit_code == 1, r.output
    assert f"error: pipectl {verb}: the leader lock is held (ctl-host-1" in r.output
    assert "is changing stages of this state store" in r.output
    assert not (tmp_path / "state" / "s.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("verb", ["backfill", "replay"])
def test_verb_takes_the_lock_and_lets_it_go(verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a holder the verb gets past the lock (here it fails later: there is no repo) and
    releases it, so a controller can take it next."""
    monkeypatch.setenv("PIPECTL_LEADER_ELECTION", "file")
    state = f"sqlite:///{tmp_path / 'state' / 's.db'}"
    r = CliRunner().invoke(app, [*ARGS[verb], "--repo", str(tmp_path / "no-repo"), "--state", state])
    assert r.exit_code == 1 and "leader lock" not in r.output, r.output
    assert (tmp_path / "state" / "controller.lock").read_text().startswith(f"pipectl-{verb}-")  # it held it
    ctl = FileLockElector(tmp_path / "state" / "controller.lock", identity="ctl")
    assert ctl.acquire()
    ctl.release()
