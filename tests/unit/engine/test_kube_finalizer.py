"""The ``pipectl.dev/prune`` finalizer through the real ``Reconciler`` over ``world.py``'s fakes,
with a fake of ``KubeApi`` (the project's own narrow interface): an object gets the finalizer; a
deleted object's release is torn down at every stage it reached (jobs stopped at once, each
inventoried resource a delete awaiting approval, the same plan ``pipectl plan``/``approve`` see),
the object keeps its finalizer until every approved delete is applied; ``orphan`` leaves
everything in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.audit.destructive import DestructiveRequest, approve_destructive
from controller.engine import teardown
from controller.engine.controller import Controller, fingerprints
from controller.engine.kube_finalizer import Finalizer
from controller.engine.kube_source import KubeSource, KubeStatus
from controller.engine.manual import preview
from controller.model.reasons import Phase
from controller.plan.resources import ResourceKind
from controller.rollout.deletion import decide
from controller.source.objects import DELETION_POLICY, FINALIZER, ObjectRef
from controller.store.destructive import Inventory
from controller.store.tokens import Principal
from tests.unit.engine.world import RELEASE, World, dag, job, repo_files, table, view

pytestmark = pytest.mark.usefixtures("quiet_logs")

TOPIC = "dev.telemetry.metrics_events"


class FakeKube:
    def __init__(self) -> None:
        self.finalizers: list[tuple[str, str, str, list[str]]] = []
        self.events: list[tuple[str, str, str]] = []
        self.statuses: list[dict[str, Any]] = []

    def set_finalizers(self, namespace: str, name: str, uid: str, finalizers: list[str]) -> None:
        self.finalizers.append((namespace, name, uid, list(finalizers)))

    def create_event(self, namespace: str, name: str, uid: str, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> World:
    """1.0.0 promoted to dev, its only stage."""
    w = World(tmp_path_factory.mktemp("finalizer"))
    gates = "      - {name: keeps-up, type: streamingHealth, maxLagSeconds: 60}\n"
    w.commit(repo_files(stages=("dev",), gates=gates))
    w.run_until(lambda: w.stage("dev").phase is Phase.SUCCEEDED)
    return w


@pytest.fixture
def world(promoted: World, tmp_path: Path) -> World:
    w = promoted.clone(tmp_path / "world")
    assert w.snap is not None
    w.snap.deleting = {RELEASE}
    return w


def finalizer(world: World, **ref: Any) -> tuple[Finalizer, FakeKube]:
    kube = FakeKube()
    src = KubeSource(None, kube)  # type: ignore[arg-type]
    src.objects = {RELEASE: ObjectRef(**{"namespace": "team-a", "name": RELEASE, "uid": "u1", "generation": 1,
                                         "finalizers": (FINALIZER,), "deleting": True, **ref})}
    world.reconciler.on_status = KubeStatus(src, world.clock)  # as controller run wires it
    return Finalizer(src, world.reconciler), kube


def live(world: World) -> set[str]:
    dev = world.at("dev")
    return (dev.kafka.names(ResourceKind.TOPIC) | dev.hive.names(ResourceKind.TABLE)
            | dev.hive.names(ResourceKind.VIEW) | dev.airflow.names(ResourceKind.DAG))


def approve_all(world: World) -> list[str]:
    assert world.snap is not None
    plan = preview(world.reconciler, world.snap, RELEASE, "dev")
    for a in plan.pending:
        approve_destructive(world.store, world.snap, plan, DestructiveRequest(RELEASE, "dev", a.id),
                            Principal("alice"))
    return [a.id for a in plan.pending]


def test_the_teardown_stops_jobs_and_deletes_each_resource_only_once_approved(world: World) -> None:
    assert world.snap is not None
    mine = {TOPIC, table("dev", "1.0.0"), view("dev"), dag("dev")}
    assert mine <= live(world) and job("dev", "1.0.0") in world.at("dev").spark.running()
    [dev] = teardown.run(world.reconciler, world.snap, RELEASE)
    assert job("dev", "1.0.0") not in world.at("dev").spark.running()  # not destructive: stopped at once
    assert dev.changed and mine <= live(world)
    [dev] = teardown.run(world.reconciler, world.snap, RELEASE)
    assert not dev.changed and not dev.errors
    assert set(dev.pending) == {f"Topic/{TOPIC}/delete", f"Table/{table('dev', '1.0.0')}/delete",
                                f"View/{view('dev')}/delete", f"Dag/{dag('dev')}/delete"}
    assert not decide(RELEASE, [dev]).done and mine <= live(world)  # never without an approval

    assert sorted(approve_all(world)) == sorted(dev.pending)  # the plan people see is the teardown's
    [dev] = teardown.run(world.reconciler, world.snap, RELEASE)
    assert not (mine & live(world)) and dev.changed and not dev.pending
    assert Inventory(world.store).get(RELEASE, "dev").entries == {}
    [dev] = teardown.run(world.reconciler, world.snap, RELEASE)
    assert decide(RELEASE, [dev]).done
    applied = [r for r in world.audit("reconcile") if any("approved by alice" in a for a in r["actions"])]
    assert len(applied) == 1 and len(applied[0]["actions"]) == 4, applied


def test_an_object_gets_the_finalizer_and_keeps_reconciling(world: World) -> None:
    assert world.snap is not None
    fin, kube = finalizer(world, deleting=False, finalizers=("other.io/keep",))
    assert fin.reconcile(world.snap, RELEASE) is None  # the usual pass runs
    assert kube.finalizers == [("team-a", RELEASE, "u1", ["other.io/keep", FINALIZER])]
    fin, kube = finalizer(world, deleting=False)
    assert fin.reconcile(world.snap, RELEASE) is None and kube.finalizers == []  # there already


def test_a_deleted_object_waits_for_approvals_then_loses_its_finalizer(world: World) -> None:
    assert world.snap is not None
    fin, kube = finalizer(world)
    for _ in range(3):
        res = fin.reconcile(world.snap, RELEASE)
        assert res is not None and not res.errors
    assert kube.finalizers == [] and res.requeue_after == 10.0
    ready = world.ready()
    assert (ready.status, ready.reason) == ("False", "Deleting")
    cmd = f"pipectl approve {RELEASE} --stage dev --destructive Topic/{TOPIC}/delete"
    assert cmd in ready.message, ready.message
    waits = [e for e in kube.events if e[1] == "DeletionAwaitingApproval"]
    assert len(waits) == 1 and cmd in waits[0][2], kube.events  # announced once, not every pass
    on_object = {c["type"]: c["reason"] for c in kube.statuses[-1]["conditions"]}
    assert on_object == {"Ready": "Deleting", "Progressing": "Deleting"}, on_object

    approve_all(world)
    for _ in range(3):
        fin.reconcile(world.snap, RELEASE)
    assert kube.finalizers == [("team-a", RELEASE, "u1", [])]  # removed once, then left alone
    assert kube.events[-1][:2] == ("Normal", "Pruned") and TOPIC not in live(world)


def test_orphan_removes_the_finalizer_and_leaves_everything(world: World) -> None:
    assert world.snap is not None
    before = live(world)
    fin, kube = finalizer(world, deletion_policy="orphan", finalizers=("other.io/keep", FINALIZER))
    res = fin.reconcile(world.snap, RELEASE)
    assert res is not None and kube.finalizers == [("team-a", RELEASE, "u1", ["other.io/keep"])]
    assert kube.events[0][:2] == ("Normal", "Orphaned")
    assert live(world) == before and job("dev", "1.0.0") in world.at("dev").spark.running()


def test_an_object_without_our_finalizer_is_left_to_the_api_server(world: World) -> None:
    assert world.snap is not None
    fin, kube = finalizer(world, finalizers=("other.io/keep",))
    assert fin.reconcile(world.snap, RELEASE) is not None and kube.finalizers == [] and kube.events == []
    assert job("dev", "1.0.0") in world.at("dev").spark.running()


def test_the_controller_asks_the_finalizer_and_queues_a_deletion_at_once(world: World) -> None:
    assert world.snap is not None
    fin, _ = finalizer(world)
    assert isinstance(Controller(fin.source, world.reconciler).finalizer, Finalizer)
    deleting = fingerprints(world.snap)[RELEASE]
    world.snap.deleting = set()
    assert fingerprints(world.snap)[RELEASE] != deleting
    assert f"{DELETION_POLICY}" == "pipectl.dev/deletion-policy"
