"""Destructive changes through the real ``Reconciler`` over in-memory fakes (``world.py``): a topic
removed from the release is a prune candidate awaiting approval at every stage that had it, never
deleted without one; an approval of another digest does not count; an approval of the plan's
action id and digest by a principal deletes it at that stage only, audited with the approver."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.audit.approvals import ApprovalRefused
from controller.audit.destructive import DestructiveRequest, approve_destructive
from controller.engine.manual import preview
from controller.engine.prune import NEEDS_APPROVAL
from controller.plan.actions import Approval, Op
from controller.plan.resources import ResourceKind
from controller.store.destructive import DestructiveApprovals, Inventory
from controller.store.tokens import Principal
from tests.unit.engine.world import RELEASE, World, release_yaml, repo_files, table

EXTRA = "    - name: telemetry.extra\n      partitions: 2\n      replicationFactor: 1\n"
GONE = "dev.telemetry.extra"
ACTION = f"Topic/{GONE}/delete"


def with_extra(version: str) -> str:
    return release_yaml(version).replace("  tables:\n", EXTRA + "  tables:\n", 1)


pytestmark = pytest.mark.usefixtures("quiet_logs")


@pytest.fixture(scope="module")
def removed(tmp_path_factory: pytest.TempPathFactory) -> World:
    """1.0.0 (with telemetry.extra) then 1.1.0 (without it) promoted everywhere."""
    w = World(tmp_path_factory.mktemp("removed"))
    w.commit({**repo_files(), f"releases/{RELEASE}.yaml": with_extra("1.0.0")})
    w.promote_everywhere("1.0.0")
    w.commit({"jobs/metrics_agg.py": "print('aggregate v2')\n", f"releases/{RELEASE}.yaml": release_yaml("1.1.0")})
    w.promote_everywhere("1.1.0")
    return w


@pytest.fixture
def world(removed: World, tmp_path: Path) -> World:
    return removed.clone(tmp_path / "world")


def topics(w: World, installation: str) -> set[str]:
    return w.at(installation).kafka.names(ResourceKind.TOPIC)


def passes(w: World, n: int) -> None:
    for _ in range(n):
        assert not w.reconcile().errors
        w.clock.advance(30)


def test_a_removed_topic_awaits_approval_and_is_never_deleted_without_it(world: World) -> None:
    passes(world, 4)
    for inst, name in (("dev", GONE), ("staging", "staging.telemetry.extra"), ("prod", "telemetry.extra")):
        assert name in topics(world, inst), inst
    assert world.succeeded_everywhere("1.1.0"), world.describe()  # a pending prune blocks nothing
    assert world.snap is not None
    plan = preview(world.reconciler, world.snap, RELEASE, "dev")
    [pending] = plan.pending
    assert (pending.id, pending.op, pending.approval) == (ACTION, Op.DELETE, Approval.REQUIRED)
    assert pending.approval_digest and pending.approval_digest.startswith("sha256:")
    assert f"needs approval: pipectl approve {RELEASE} --stage dev --destructive {ACTION}" in pending.reason
    assert plan.is_noop and not plan.refused
    # announced once per stage that had the topic (a canary stage has no inventory of its own)
    notes = [e for e in world.store.recent_events(RELEASE, 200) if e["reason"] == NEEDS_APPROVAL]
    assert sorted(e["stage"] for e in notes) == ["dev", "prod", "staging"], notes
    # blue/green tables of earlier versions are not candidates: their logical table is declared
    assert table("dev", "1.0.0") in world.at("dev").hive.names(ResourceKind.TABLE)
    assert all(a.kind is ResourceKind.TOPIC for a in plan.pending)


def test_an_approval_of_another_digest_does_not_count(world: World) -> None:
    DestructiveApprovals(world.store).record(RELEASE, "dev", ACTION, "sha256:" + "0" * 64, "alice", None)
    passes(world, 3)
    assert GONE in topics(world, "dev")
    assert world.snap is not None
    [pending] = preview(world.reconciler, world.snap, RELEASE, "dev").pending
    with pytest.raises(ApprovalRefused) as refused:
        approve_destructive(
            world.store, world.snap, preview(world.reconciler, world.snap, RELEASE, "dev"),
            DestructiveRequest(RELEASE, "dev", ACTION, "sha256:" + "1" * 64), Principal("alice"),
        )
    assert refused.value.reason == "PlanChanged" and str(pending.approval_digest) in refused.value.message


def test_an_approved_delete_is_applied_at_that_stage_and_audited(world: World) -> None:
    assert world.snap is not None
    plan = preview(world.reconciler, world.snap, RELEASE, "dev")
    digest = str(plan.pending[0].approval_digest)
    out = approve_destructive(
        world.store, world.snap, plan, DestructiveRequest(RELEASE, "dev", ACTION, digest), Principal("alice")
    )
    assert (out["principal"], out["digest"], out["new"]) == ("alice", digest, True)
    passes(world, 1)
    assert GONE not in topics(world, "dev")
    assert "staging.telemetry.extra" in topics(world, "staging") and "telemetry.extra" in topics(world, "prod")
    applied = [r for r in world.audit() if any(a.startswith(ACTION) for a in r.get("actions", []))]
    assert len(applied) == 1, applied
    assert f"{ACTION}: done (approved by alice, {digest})" in applied[0]["actions"]
    assert applied[0]["details"]["destructiveApprovals"] == [{"action": ACTION, "approver": "alice", "digest": digest}]
    [approval] = [r for r in world.audit("approval") if r.get("details", {}).get("destructive")]
    assert approval["actor"] == "alice" and approval["details"]["destructive"]["action"] == ACTION
    # used: never counts again; the stage has nothing left to prune
    assert DestructiveApprovals(world.store).grants(RELEASE, "dev") == ()
    assert f"Topic/{GONE}" not in Inventory(world.store).get(RELEASE, "dev").entries
    passes(world, 2)
    assert not preview(world.reconciler, world.snap, RELEASE, "dev").actions
    assert world.succeeded_everywhere("1.1.0")


def test_an_action_not_in_the_plan_or_not_awaiting_approval_is_refused(world: World) -> None:
    assert world.snap is not None
    plan = preview(world.reconciler, world.snap, RELEASE, "dev")
    for action_id, reason in (("Topic/dev.nope/delete", "ActionNotInPlan"), ("Topic/x/create", "ActionNotInPlan")):
        with pytest.raises(ApprovalRefused) as refused:
            approve_destructive(
                world.store, world.snap, plan, DestructiveRequest(RELEASE, "dev", action_id), Principal("bob")
            )
        assert refused.value.reason == reason and ACTION in refused.value.message
    with pytest.raises(ApprovalRefused) as refused:
        approve_destructive(
            world.store, world.snap, plan, DestructiveRequest(RELEASE, "qa", ACTION), Principal("bob")
        )
    assert refused.value.status == 400


def test_a_topic_another_release_declares_now_is_never_a_candidate(world: World) -> None:
    from controller.store.destructive import InventoryDoc

    claimed = f"Topic/{GONE}"
    Inventory(world.store).put("other", "dev", InventoryDoc(entries={claimed: claimed}))
    assert world.snap is not None
    assert not preview(world.reconciler, world.snap, RELEASE, "dev").pending
    passes(world, 1)
    assert claimed not in Inventory(world.store).get(RELEASE, "dev").entries  # ours no more
    assert GONE in topics(world, "dev")
    assert [a.id for a in preview(world.reconciler, world.snap, RELEASE, "staging").pending] == [
        "Topic/staging.telemetry.extra/delete"
    ]
