"""`pipectl rollback`: through the controller's API when a server is given (as the token's
principal, waiting for the controller's outcome); without one only under the controller's leader
lock, refused while a controller holds it; ``--as`` is gone. And `pipectl approve --destructive`,
which posts the action id (and the digest looked at) to the API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.api.operations import Operations, RollbackAsk
from controller.api.server import ApiServer, ApiState
from controller.engine.leader import FileLockElector
from controller.engine.requests import RollbackRequests
from controller.store.db import Store
from controller.store.tokens import Principal, TokenStore

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("PIPECTL_SERVER", "PIPECTL_TOKEN")}
    full.update(PIPECTL_CONFIG=str(tmp / "no-config.yaml"), **env)  # no context of this machine's
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=full)


def test_as_is_gone(tmp_path: Path) -> None:
    r = run("rollback", "metrics", "--stage", "prod", "--as", "alice", tmp=tmp_path)
    assert r.returncode == 1 and "--as is gone" in r.stderr


def test_without_a_server_a_running_controller_s_lock_refuses(repo: Path, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state' / 's.db'}"
    held = FileLockElector(tmp_path / "state" / "controller.lock", identity="ctl-host-1")
    assert held.acquire()
    try:
        r = run("rollback", "host-metrics", "--stage", "prod", "--state", state, "--repo", str(repo), tmp=tmp_path)
        assert r.returncode == 1
        assert "a controller holds the leader lock (ctl-host-1" in r.stderr and "--server" in r.stderr, r.stderr
    finally:
        held.release()
    # no controller: the rollback runs here, on the controller's code path, and lets the lock go
    r = run("rollback", "host-metrics", "--stage", "prod", "--state", state, "--repo", str(repo), tmp=tmp_path)
    assert r.returncode == 1 and 'release "host-metrics" not found in the state store' in r.stderr, r.stderr
    again = FileLockElector(tmp_path / "state" / "controller.lock")
    assert again.acquire()
    again.release()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, str, RollbackRequests]]:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    tokens = TokenStore(store)
    _, token = tokens.create("alice")
    slot = RollbackRequests()

    def rollback(ask: RollbackAsk, who: Principal) -> dict[str, Any]:
        req = slot.submit(ask.release, ask.stage, ask.to_version, who.user)
        # the controller's worker, at once: done for 1.0.0, failed for anything else
        taken = slot.take(ask.release)
        assert taken is not None
        if ask.to_version == "1.0.0":
            slot.finish(req.id, True, f"rolled back {ask.release} at {ask.stage} to 1.0.0")
        else:
            slot.finish(req.id, False, f"{ask.release} {ask.to_version} was never promoted")
        return req.as_dict()

    def status(release: str, request_id: str) -> dict[str, Any] | None:
        req = slot.get(release, request_id)
        return req.as_dict() if req else None

    def destructive(req: Any, who: Principal) -> dict[str, Any]:
        return {"action": req.action_id, "digest": req.digest or "sha256:cur", "principal": who.user, "new": True}

    state = ApiState(
        store=store, tokens=tokens, webhook_secret="s", trigger=lambda _n: None,
        health=lambda: {"ok": True, "leader": True}, metrics=lambda: b"",
        approve=lambda _r, _w: {}, operations=Operations(destructive, rollback, status),
    )
    srv = ApiServer("127.0.0.1:0", state)
    srv.start()
    yield srv, token, slot
    srv.stop()


def test_with_a_server_the_controller_rolls_back_as_the_token_s_principal(
    api: tuple[ApiServer, str, RollbackRequests], tmp_path: Path
) -> None:
    srv, token, _ = api
    url = f"http://{srv.address[0]}:{srv.address[1]}"
    r = run("rollback", "metrics", "--stage", "prod", "--to-version", "1.0.0", "--server", url, tmp=tmp_path,
            PIPECTL_TOKEN=token)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "rolled back metrics at prod to 1.0.0 (by alice)"
    r = run("rollback", "metrics", "--stage", "prod", "--to-version", "0.1.0", tmp=tmp_path,
            PIPECTL_TOKEN=token, PIPECTL_SERVER=url)
    assert r.returncode == 1 and "failed: metrics 0.1.0 was never promoted" in r.stderr, r.stderr
    r = run("rollback", "metrics", "--stage", "prod", "--server", url, tmp=tmp_path, PIPECTL_TOKEN="pct_nope")
    assert r.returncode == 1 and "token" in r.stderr


def test_approve_destructive_posts_the_action_and_its_digest(
    api: tuple[ApiServer, str, RollbackRequests], tmp_path: Path
) -> None:
    srv, token, _ = api
    url = f"http://{srv.address[0]}:{srv.address[1]}"
    r = run("approve", "metrics", "--stage", "dev", "--destructive", "Topic/dev.x/delete", "--digest",
            "sha256:abc", "--server", url, tmp=tmp_path, PIPECTL_TOKEN=token)
    assert r.returncode == 0, r.stderr
    assert "approved destructive action Topic/dev.x/delete (sha256:abc) of metrics at dev as alice" in r.stdout
    r = run("approve", "metrics", "--stage", "dev", "--destructive", "Topic/dev.x/delete", "--version", "1.0.0",
            "--server", url, tmp=tmp_path, PIPECTL_TOKEN=token)
    assert r.returncode == 1 and "not with --version" in r.stderr
    r = run("approve", "metrics", "--stage", "dev", "--destructive", "Topic/dev.x/delete", tmp=tmp_path)
    assert r.returncode == 1 and "through the controller's API" in r.stderr
