"""Approvals through a running controller: only an authenticated principal that prod's Environment
names may approve, and an approval is for the version (and content) that was looked at.

A release with stages [dev, prod] on the real stack; prod is ``promotion: approval`` with
``approvers: {users: [alice]}``. Tokens for alice and bob come from ``pipectl token create``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctlkit import (
    ROOT,
    Ctl,
    commit_files,
    drop_everything,
    free_port,
    init_repo,
    pipectl,
    release_yaml,
    stage_env_yaml,
    stage_status,
    status,
    token_for,
    wait_for,
)


def two_stage(name: str, version: str, retention: str) -> str:
    return release_yaml(name, version, retention, False, False).replace("stages: [dev]", "stages: [dev, prod]")


def call(port: int, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def world(
    tmp_path: Path, stack: dict[str, Any], unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ctl, Path, Path, str]]:
    # the stack's Airflow password (pipectl itself has no default; the stack's is admin)
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin"))
    uid, dags = unique_name, stack["airflow_dags_folder"]
    name = f"rc-{uid}"
    prod = stage_env_yaml("prod", f"it{uid}.", f"it{uid}_", dags, promotion="approval")
    prod += "  approvers: {users: [alice]}\n"
    repo = init_repo(tmp_path, {
        "environments/dev.yaml": stage_env_yaml("dev", f"it{uid}d.", f"it{uid}d_", dags),
        "environments/prod.yaml": prod,
        "releases/rc.yaml": two_stage(name, "1.0.0", "3600000"),
    }, "1.0.0")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    yield ctl, repo, state, name
    ctl.stop()
    drop_everything(uid, [f"it{uid}d_rc", f"it{uid}_rc"], dags, None)


def awaiting_approval(state: Path, name: str, version: str) -> bool:
    st = status(state, name)
    prod = st.get("stages", {}).get("prod", {})
    dev = st.get("stages", {}).get("dev", {})
    return (st.get("version") == version and dev.get("version") == version and dev.get("phase") == "Succeeded"
            and prod.get("reason") == "AwaitingApproval")


def test_approval_needs_a_principal(world) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name = world
    state.parent.mkdir(parents=True, exist_ok=True)
    alice, bob = token_for(state, "alice"), token_for(state, "bob")
    ctl.start()
    approve = f"/api/v1/releases/{name}/approve"
    wait_for(lambda: awaiting_approval(state, name, "1.0.0"), 180, "dev on 1.0.0, prod awaiting approval", ctl.log)

    # no token, a principal prod does not list, an unknown stage
    code, body = call(ctl.port, approve, {"stage": "prod", "version": "1.0.0"})
    assert code == 401, body
    code, body = call(ctl.port, approve, {"stage": "prod", "version": "1.0.0"}, bob)
    assert code == 403 and "bob may not approve stage prod" in body["error"], body
    code, body = call(ctl.port, approve, {"stage": "qa", "version": "1.0.0"}, alice)
    assert code == 400 and body["reason"] == "UnknownStage", body
    assert call(ctl.port, f"/api/v1/releases/{name}")[0] == 401  # reads need a token too
    assert call(ctl.port, f"/api/v1/releases/{name}", token=bob)[1]["status"]["version"] == "1.0.0"

    # alice approves 1.0.0: prod promotes it
    code, body = call(ctl.port, approve, {"stage": "prod", "version": "1.0.0"}, alice)
    assert code == 200 and body["principal"] == "alice" and body["revision"].startswith("sha256:"), body
    first_revision = body["revision"]
    wait_for(lambda: stage_status(state, name, "prod").get("phase") == "Succeeded"
             and stage_status(state, name, "prod").get("version") == "1.0.0", 180, "prod on 1.0.0", ctl.log)

    # 1.1.0 is committed while alice still looks at 1.0.0: her approval of 1.0.0 is refused (409,
    # naming 1.1.0), and neither it nor the earlier one promotes 1.1.0
    commit_files(repo, {"releases/rc.yaml": two_stage(name, "1.1.0", "7200000")}, "1.1.0")
    ctl.webhook()
    wait_for(lambda: awaiting_approval(state, name, "1.1.0"), 180, "dev on 1.1.0, prod awaiting approval", ctl.log)
    code, body = call(ctl.port, approve, {"stage": "prod", "version": "1.0.0", "revision": first_revision}, alice)
    assert code == 409 and "at version 1.1.0 now" in body["error"], body
    time.sleep(8)  # several passes (interval 2s)
    prod = stage_status(state, name, "prod")
    assert prod.get("version") == "1.0.0" and prod.get("reason") == "AwaitingApproval", prod

    # alice approves 1.1.0 with pipectl, her token from the environment: prod promotes it
    env = {**os.environ, "PIPECTL_TOKEN": alice}
    r = subprocess.run(
        [sys.executable, "-m", "controller.cli.main", "approve", name, "--stage", "prod",
         "--server", f"http://127.0.0.1:{ctl.port}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"approved {name} 1.1.0" in r.stdout and "as alice" in r.stdout, r.stdout
    wait_for(lambda: stage_status(state, name, "prod").get("phase") == "Succeeded"
             and stage_status(state, name, "prod").get("version") == "1.1.0", 180, "prod on 1.1.0", ctl.log)
    ctl.stop()

    # the audit trail names the principal and the revision of each approval, and only alice's
    r = pipectl("audit", name, "--state", f"sqlite:///{state}", "-o", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    records = records.get("items", records) if isinstance(records, dict) else records
    approvals = [x for x in records if x.get("kind") == "approval"]
    assert [(x["version"], x["actor"]) for x in approvals] == [("1.0.0", "alice"), ("1.1.0", "alice")], approvals
    assert approvals[0]["revision"] == first_revision and approvals[1]["revision"] != first_revision
    described = pipectl("describe", "release", name, "--state", f"sqlite:///{state}")
    assert "alice approved 1.1.0" in described.stdout, described.stdout
    assert pipectl("audit", "verify", "--state", f"sqlite:///{state}").returncode == 0
