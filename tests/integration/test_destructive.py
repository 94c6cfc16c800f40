"""Destructive changes and manual rollbacks through a running controller, on the real stack.

- A topic removed from a release is a prune candidate: ``pipectl plan`` shows its delete awaiting
  approval with the command to approve it, and the topic outlives several passes; a principal who
  is not one of the stage's approvers is refused; alice approves the action id (and the digest the
  plan showed) with ``pipectl approve --destructive``, the controller deletes the topic, and the
  audit trail names her and the action.
- ``pipectl rollback --server`` with alice's token has the controller roll dev back from 1.1.0 to
  1.0.0 (RolledBack/ManualRollback, the topic config restored, audited as alice), while the same
  command without a server refuses: the controller holds the leader lock.

The release has stages [dev] (``ctlkit.release_yaml``); dev's Environment names alice its approver.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctlkit import (
    Ctl,
    commit_files,
    drop_everything,
    free_port,
    init_repo,
    pipectl,
    release_yaml,
    stage_env_yaml,
    stage_is,
    stage_status,
    token_for,
    topic_config,
    wait_for,
)

BOOTSTRAP = "127.0.0.1:9092"


@pytest.fixture
def world(
    tmp_path: Path, stack: dict[str, Any], unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ctl, Path, Path, str, str]]:
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin"))
    # this test's own client config: no context of this machine's (another controller's server)
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "config.yaml"))
    for var in ("PIPECTL_SERVER", "PIPECTL_TOKEN", "PIPECTL_STATE", "PIPECTL_REPO"):
        monkeypatch.delenv(var, raising=False)
    uid, dags = unique_name, stack["airflow_dags_folder"]
    name = f"rc-{uid}"
    dev = stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", dags) + "  approvers: {users: [alice]}\n"
    repo = init_repo(tmp_path, {
        "environments/dev.yaml": dev,
        "releases/rc.yaml": release_yaml(name, "1.0.0", "3600000", True, False),
    }, "1.0.0")
    state = tmp_path / "state" / "state.db"
    state.parent.mkdir(parents=True)
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    yield ctl, repo, state, name, uid
    ctl.stop()
    drop_everything(uid, [f"it{uid}_rc"], dags, None)


def as_user(token: str, *args: str) -> Any:
    import subprocess
    import sys

    from ctlkit import ROOT

    env = {**os.environ, "PIPECTL_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def audit(state: Path, name: str) -> list[dict[str, Any]]:
    r = pipectl("audit", name, "--state", f"sqlite:///{state}", "-o", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    return list(records.get("items", records) if isinstance(records, dict) else records)


def test_a_removed_topic_is_deleted_only_once_approved(world) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name, uid = world
    alice, bob = token_for(state, "alice"), token_for(state, "bob")
    gone = f"it{uid}.rc.events_b"
    ctl.start()
    wait_for(lambda: stage_is(state, name, "dev", "1.0.0", "Succeeded"), 180, "dev on 1.0.0", ctl.log)
    assert topic_config(BOOTSTRAP, gone) is not None

    commit_files(repo, {"releases/rc.yaml": release_yaml(name, "1.1.0", "3600000", False, False)}, "1.1.0")
    ctl.webhook()
    wait_for(lambda: stage_is(state, name, "dev", "1.1.0", "Succeeded"), 180, "dev on 1.1.0", ctl.log)

    # the plan shows the prune awaiting approval, with its id, digest and the command
    args = ("plan", name, "--stage", "dev", "--repo", str(repo), "--state", f"sqlite:///{state}")
    r = pipectl(*args)
    assert r.returncode == 0, r.stderr
    action = f"Topic/{gone}/delete"
    assert f"needs approval: pipectl approve {name} --stage dev --destructive {action}" in r.stdout, r.stdout
    r = pipectl(*args, "-o", "json")
    [pending] = [a for a in json.loads(r.stdout)["actions"] if a.get("approval") == "required"]
    assert (pending["op"], pending["kind"], pending["name"]) == ("delete", "Topic", gone)
    digest = pending["approval_digest"]

    time.sleep(8)  # several passes (interval 2s): never deleted without an approval
    assert topic_config(BOOTSTRAP, gone) is not None
    assert stage_status(state, name, "dev").get("phase") == "Succeeded"  # and nothing else waits for it

    server = f"http://127.0.0.1:{ctl.port}"
    approve = ("approve", name, "--stage", "dev", "--destructive", action, "--digest", digest, "--server", server)
    r = as_user(bob, *approve)
    assert r.returncode == 1 and "bob may not approve stage dev" in r.stderr, r.stderr
    r = as_user(alice, *approve[:-4], "--digest", "sha256:" + "0" * 64, "--server", server)
    assert r.returncode == 1 and "look at the plan again" in r.stderr, r.stderr
    assert topic_config(BOOTSTRAP, gone) is not None
    r = as_user(alice, *approve)
    assert r.returncode == 0, r.stderr
    assert f"approved destructive action {action} ({digest})" in r.stdout and "as alice" in r.stdout

    wait_for(lambda: topic_config(BOOTSTRAP, gone) is None, 60, f"{gone} deleted", ctl.log)
    assert topic_config(BOOTSTRAP, f"it{uid}.rc.events") is not None
    records = audit(state, name)
    [approval] = [x for x in records if x["kind"] == "approval" and x.get("details", {}).get("destructive")]
    assert approval["actor"] == "alice" and approval["details"]["destructive"] == {
        "action": action, "digest": digest, "op": "delete"}
    applied = [x for x in records if any(a.startswith(f"{action}: done") for a in x.get("actions") or [])]
    assert len(applied) == 1 and f"{action}: done (approved by alice, {digest})" in applied[0]["actions"]


def test_rollback_goes_through_the_controller(world) -> None:  # type: ignore[no-untyped-def]
    ctl, repo, state, name, uid = world
    alice = token_for(state, "alice")
    ctl.start()
    wait_for(lambda: stage_is(state, name, "dev", "1.0.0", "Succeeded"), 180, "dev on 1.0.0", ctl.log)
    commit_files(repo, {"releases/rc.yaml": release_yaml(name, "1.1.0", "7200000", True, False)}, "1.1.0")
    ctl.webhook()
    wait_for(lambda: stage_is(state, name, "dev", "1.1.0", "Succeeded"), 180, "dev on 1.1.0", ctl.log)
    topic = f"it{uid}.rc.events"
    assert (topic_config(BOOTSTRAP, topic) or {}).get("retention.ms") == "7200000"

    # without a server: the running controller holds the leader lock
    local = ("rollback", name, "--stage", "dev", "--repo", str(repo), "--state", f"sqlite:///{state}")
    r = pipectl(*local)
    assert r.returncode == 1 and "a controller holds the leader lock" in r.stderr, r.stderr
    assert stage_is(state, name, "dev", "1.1.0", "Succeeded")

    r = as_user(alice, "rollback", name, "--stage", "dev", "--server", f"http://127.0.0.1:{ctl.port}")
    assert r.returncode == 0, r.stderr
    assert f"rolled back {name} at dev to 1.0.0" in r.stdout and "(by alice)" in r.stdout, r.stdout
    st = stage_status(state, name, "dev")
    assert (st.get("phase"), st.get("reason")) == ("RolledBack", "ManualRollback"), st
    assert st.get("message") == "alice rolled back to 1.0.0"
    assert (topic_config(BOOTSTRAP, topic) or {}).get("retention.ms") == "3600000"
    time.sleep(6)  # later passes hold 1.0.0 there
    st = stage_status(state, name, "dev")
    assert st.get("phase") == "RolledBack", st
    assert (topic_config(BOOTSTRAP, topic) or {}).get("retention.ms") == "3600000"
    [rb] = [x for x in audit(state, name) if x["kind"] == "rollback" and x.get("reason") == "ManualRollback"]
    assert rb["actor"] == "alice" and rb["version"] == "1.0.0", rb
    assert rb["message"] == "alice rolled back dev from 1.1.0 to 1.0.0"


def test_an_approved_partition_decrease_recreates_the_topic(unique_name: str, stack: dict[str, Any]) -> None:
    """The Kafka adapter applies an approved REPLACE: delete, create again with fewer partitions."""
    from controller.adapters.kafka import KafkaAdapter
    from controller.plan.actions import DiffContext, Grant, Op
    from controller.plan.planner import diff_resources
    from controller.plan.resources import TopicResource

    name = f"it{unique_name}.shrink"
    adapter = KafkaAdapter(BOOTSTRAP)
    try:
        six = TopicResource(name=name, partitions=6, replication_factor=1)
        [create] = diff_resources([six], {}, DiffContext())
        adapter.apply(create)
        three = six.model_copy(update={"partitions": 3, "config": {"retention.ms": "3600000"}})
        live = adapter.observe(create.kind, [name])
        [refused] = diff_resources([three], {six.key: live[name]}, DiffContext())
        assert (refused.op, refused.pending) == (Op.REFUSE, True)
        grant = Grant(action_id=refused.id, digest=str(refused.approval_digest), approver="alice")
        [replace] = diff_resources([three], {six.key: live[name]}, DiffContext(grants=(grant,)))
        assert (replace.op, replace.approved_by) == (Op.REPLACE, "alice")
        result = adapter.apply(replace)
        assert result.changed and "recreated with 3 partitions (approved by alice)" in result.message
        now = adapter.observe(create.kind, [name])[name]
        assert now.partitions == 3 and now.config.get("retention.ms") == "3600000"
        assert adapter.apply(replace).changed is False  # idempotent
    finally:
        drop_everything(unique_name, [], stack["airflow_dags_folder"], None)
        adapter.close()
