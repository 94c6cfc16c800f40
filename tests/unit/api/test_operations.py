"""The API's stage operations (``controller.api.operations``): destructive approvals and manual
rollbacks, by an approver of the stage (prod names alice and the group ``sre``), with the real
checks (``check_stage``, ``approve_destructive``) and the real request slot
(``controller.engine.requests``); and the controller's worker running a queued rollback before
the release's pass."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apikit import World, auth

from controller.api.operations import Operations, RollbackAsk
from controller.audit.approvals import ApprovalRefused, check_stage
from controller.audit.destructive import DestructiveRequest, approve_destructive
from controller.engine import controller as controller_module
from controller.engine.controller import Controller
from controller.engine.passes import Result
from controller.engine.requests import RequestConflict, RollbackRequests
from controller.model.errors import PipectlError
from controller.plan.actions import Action, Approval, Op, Plan, Reversibility
from controller.plan.resources import ResourceKind
from controller.source.validate import load_repo
from controller.store.destructive import DestructiveApprovals
from controller.store.tokens import Principal

DIGEST = "sha256:" + "ab" * 32
ACTION = "Topic/telemetry.gone/delete"
DESTRUCTIVE = "/api/v1/releases/host-metrics/destructive-approvals"
ROLLBACK = "/api/v1/releases/host-metrics/rollback"


def plan() -> Plan:
    gone = Action(
        op=Op.DELETE, kind=ResourceKind.TOPIC, name="telemetry.gone", reason="not desired any more",
        reason_code="DeleteNotApproved", reversibility=Reversibility.DESTRUCTIVE,
        approval=Approval.REQUIRED, approval_digest=DIGEST,
    )
    return Plan(release="host-metrics", version="1.0.0", stage="prod", generated_at=datetime.now(UTC),
                actions=[gone])


@pytest.fixture
def world(repo: Path, tmp_path: Path) -> Iterator[World]:
    w = World(repo, tmp_path)
    w.slot = RollbackRequests()  # type: ignore[attr-defined]

    def destructive(req: DestructiveRequest, who: Principal) -> dict[str, Any]:
        return approve_destructive(w.store, load_repo(repo), plan(), req, who)

    def rollback(ask: RollbackAsk, who: Principal) -> dict[str, Any]:
        check_stage(load_repo(repo), ask.release, ask.stage, who)
        try:
            return w.slot.submit(ask.release, ask.stage, ask.to_version, who.user).as_dict()  # type: ignore[attr-defined]
        except RequestConflict as e:
            raise ApprovalRefused(409, "RollbackInProgress", str(e)) from None

    def status(release: str, request_id: str) -> dict[str, Any] | None:
        req = w.slot.get(release, request_id)  # type: ignore[attr-defined]
        return req.as_dict() if req else None

    w.state.operations = Operations(destructive, rollback, status)
    yield w
    w.client.close()


def test_a_destructive_approval_is_bound_to_the_action_and_its_digest(world: World) -> None:
    body = {"stage": "prod", "actionId": ACTION, "digest": DIGEST}
    assert world.client.post(DESTRUCTIVE, json=body).status_code == 401
    r = world.client.post(DESTRUCTIVE, json=body, headers=auth(world.bob))
    assert r.status_code == 403 and "bob may not approve stage prod" in r.json()["error"]
    r = world.client.post(DESTRUCTIVE, json={**body, "digest": "sha256:" + "00" * 32}, headers=auth(world.alice))
    assert r.status_code == 409 and r.json()["reason"] == "PlanChanged", r.text
    r = world.client.post(DESTRUCTIVE, json={**body, "actionId": "Topic/other/delete"}, headers=auth(world.alice))
    assert r.status_code == 409 and r.json()["reason"] == "ActionNotInPlan" and ACTION in r.json()["error"]
    r = world.client.post(DESTRUCTIVE, json=body, headers=auth(world.carol))  # in the approver group
    assert r.status_code == 200, r.text
    assert r.json() | {"commit": None} == {
        "release": "host-metrics", "stage": "prod", "action": ACTION, "digest": DIGEST,
        "principal": "carol", "commit": None, "new": True,
    }
    assert world.triggered == ["host-metrics"]
    [grant] = DestructiveApprovals(world.store).grants("host-metrics", "prod")
    assert (grant.action_id, grant.digest, grant.approver) == (ACTION, DIGEST, "carol")
    again = world.client.post(DESTRUCTIVE, json={"stage": "prod", "actionId": ACTION}, headers=auth(world.alice))
    assert again.status_code == 200 and again.json()["new"] is False and again.json()["principal"] == "carol"


def test_a_destructive_approval_refuses_a_bad_body(world: World) -> None:
    for body in ({"stage": "prod"}, {"stage": "prod", "actionId": ACTION, "as": "alice"}, {"actionId": ACTION}):
        r = world.client.post(DESTRUCTIVE, json=body, headers=auth(world.alice))
        assert r.status_code == 400, (body, r.text)


def test_a_rollback_is_queued_for_the_controller_and_can_be_followed(world: World) -> None:
    body = {"stage": "prod", "toVersion": "0.9.0"}
    assert world.client.post(ROLLBACK, json=body).status_code == 401
    r = world.client.post(ROLLBACK, json=body, headers=auth(world.bob))
    assert r.status_code == 403, r.text
    r = world.client.post(ROLLBACK, json={"stage": "qa"}, headers=auth(world.alice))
    assert r.status_code == 400 and r.json()["reason"] == "UnknownStage"
    r = world.client.post(ROLLBACK, json=body, headers=auth(world.alice))
    assert r.status_code == 202, r.text
    req = r.json()
    assert (req["state"], req["actor"], req["stage"], req["toVersion"]) == ("queued", "alice", "prod", "0.9.0")
    r = world.client.post(ROLLBACK, json={"stage": "prod"}, headers=auth(world.carol))
    assert r.status_code == 409 and "is queued" in r.json()["error"]
    got = world.client.get(f"{ROLLBACK}/{req['id']}", headers=auth(world.bob))
    assert got.status_code == 200 and got.json()["state"] == "queued"
    assert world.client.get(f"{ROLLBACK}/nope", headers=auth(world.bob)).status_code == 404


def test_without_a_controller_the_operations_are_not_implemented(world: World) -> None:
    world.state.operations = None
    r = world.client.post(ROLLBACK, json={"stage": "prod"}, headers=auth(world.alice))
    assert r.status_code == 501


# --- the request slot and the controller's worker ----------------------------------------------


def test_the_slot_holds_one_request_per_release() -> None:
    slot = RollbackRequests(keep=2)
    a = slot.submit("r", "prod", None, "alice")
    with pytest.raises(RequestConflict, match="by alice is queued"):
        slot.submit("r", "dev", None, "bob")
    other = slot.submit("s", "prod", "1.0.0", "bob")
    assert slot.pending() == ["r", "s"]
    assert slot.take("r") is not None and slot.take("r") is None  # running: taken once
    assert slot.get("r", a.id).state == "running"  # type: ignore[union-attr]
    assert slot.get("s", a.id) is None  # another release's id
    slot.finish(a.id, True, "rolled back")
    done = slot.get("r", a.id)
    assert done is not None and (done.state, done.message) == ("done", "rolled back") and done.finished_at
    b = slot.submit("r", "prod", None, "carol")  # the release is free again
    slot.finish(other.id, False, "boom")
    assert slot.get("s", other.id).state == "failed"  # type: ignore[union-attr]
    slot.submit("t", "prod", None, "dave")  # keep=2: the oldest finished request is forgotten
    assert slot.get("r", a.id) is None and slot.get("r", b.id) is not None


class _Store:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def add_event(self, *args: Any) -> None:
        self.events.append(args)


class _Reconciler:
    def __init__(self, calls: list[str]) -> None:
        self.calls, self.store = calls, _Store()

    def reconcile(self, snap: Any, name: str) -> Result:
        self.calls.append(f"pass {name}")
        return Result()


def test_the_worker_runs_a_queued_rollback_before_the_release_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def rollback_stage(rec: Any, snap: Any, name: str, stage: str, to: str | None, actor: str) -> str:
        calls.append(f"rollback {name} {stage} {to} {actor}")
        if to == "9.9.9":
            raise PipectlError("metrics 9.9.9 was never promoted")
        return f"rolled back {name} at {stage} to {to}"

    monkeypatch.setattr(controller_module, "rollback_stage", rollback_stage)
    rec = _Reconciler(calls)
    ctl = Controller(source=None, reconciler=rec)  # type: ignore[arg-type]
    ctl._snap, ctl._prints = object(), {"metrics": "x"}  # type: ignore[assignment]
    ok = ctl.rollbacks.submit("metrics", "prod", "1.0.0", "alice")
    ctl.process("other")  # another release's pass leaves it waiting
    assert calls == [] and ctl.rollbacks.pending() == ["metrics"]
    ctl.process("metrics")
    assert calls == ["rollback metrics prod 1.0.0 alice", "pass metrics"]
    assert ctl.rollbacks.get("metrics", ok.id).message == "rolled back metrics at prod to 1.0.0"  # type: ignore[union-attr]
    bad = ctl.rollbacks.submit("metrics", "prod", "9.9.9", "alice")
    ctl.process("metrics")
    failed = ctl.rollbacks.get("metrics", bad.id)
    assert failed is not None and (failed.state, failed.message) == ("failed", "metrics 9.9.9 was never promoted")
    assert rec.store.events == [("metrics", "prod", "Warning", "ManualRollbackFailed",
                                 "alice: metrics 9.9.9 was never promoted")]
    assert calls[-1] == "pass metrics"  # the pass runs all the same
