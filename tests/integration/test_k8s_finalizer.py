"""The ``pipectl.dev/prune`` finalizer against the stack's real kube-apiserver, Kafka and Hive, with
a real ``controller run --source kubernetes`` process (``controller/engine/kube_finalizer.py``).

- Two objects are created with kubectl and promoted to dev (their only stage); both get the
  finalizer. One carries ``pipectl.dev/deletion-policy: orphan``.
- Both are deleted with kubectl. The orphan one disappears and its topic stays. The other stays
  (deletionTimestamp set, finalizer present), its topic and table still exist, and its Ready
  condition (reason Deleting) and a ``DeletionAwaitingApproval`` Event name each delete awaiting
  approval with the command; nothing is deleted without one.
- alice (dev's approver) approves each action with that command through the controller's API; the
  topic and the table are deleted, the finalizer removed, and the API server deletes the object.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from ctlkit import ROOT, Ctl, drop_everything, free_port, init_repo, stage_env_yaml, token_for, wait_for
from kubekit import Kube, connect
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.hive import HiveAdapter
from controller.adapters.kube import GROUP, PLURAL, VERSION
from controller.plan.resources import ResourceKind

BOOTSTRAP = "127.0.0.1:9092"


def release(name: str, db: str, annotations: str = "") -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
{annotations}spec:
  version: 1.0.0
  topics:
    - name: {db}.events
      partitions: 1
      replicationFactor: 1
  tables:
    - name: {db}.counts
      columns: [{{name: k, type: string}}, {{name: cnt, type: bigint}}]
  rollout:
    stages: [dev]
"""


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Kube, str, Ctl, str, dict[str, Any]]]:
    kube = connect()
    kube.apply_crd()
    ns = kube.ensure_namespace()
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin"))
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "config.yaml"))
    for var in ("PIPECTL_SERVER", "PIPECTL_TOKEN", "PIPECTL_STATE", "PIPECTL_REPO"):
        monkeypatch.delenv(var, raising=False)
    uid, dags = unique_name, stack["airflow_dags_folder"]
    dev = stage_env_yaml("dev", f"it{uid}d.", f"it{uid}d_", dags) + "  approvers: {users: [alice]}\n"
    repo = init_repo(tmp_path, {"environments/dev.yaml": dev}, "environments")
    state = tmp_path / "state" / "state.db"
    state.parent.mkdir(parents=True)
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log",
              extra_args=["--source", "kubernetes", "--namespace", ns])
    yield kube, ns, ctl, uid, stack
    ctl.stop()
    kube.delete_releases(ns, f"it={uid}")  # a failed test leaves no object held by the finalizer
    drop_everything(uid, [f"it{uid}d_fz", f"it{uid}d_fo"], dags, None)


def apply(kube: Kube, ns: str, text: str, uid: str) -> None:
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=text.replace("metadata:\n", f"metadata:\n  labels: {{it: {uid}}}\n"))


def get(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def promoted(kube: Kube, ns: str, name: str) -> bool:
    obj = get(kube, ns, name) or {}
    dev = obj.get("status", {}).get("stages", {}).get("dev", {})
    return dev.get("phase") == "Succeeded" and "pipectl.dev/prune" in obj["metadata"].get("finalizers", [])


def ready(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    conds = (get(kube, ns, name) or {}).get("status", {}).get("conditions", [])
    return next((c for c in conds if c["type"] == "Ready"), {})


def topics() -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=10).topics)


def tables(stack: dict[str, Any], names: list[str]) -> set[str]:
    hive = HiveAdapter(stack["thrift_host"], int(stack["thrift_port"]), auth="NOSASL")
    try:
        return set(hive.observe(ResourceKind.TABLE, names))
    finally:
        hive.close()


def test_a_deleted_object_waits_for_approvals_then_prunes_and_goes(world) -> None:  # type: ignore[no-untyped-def]
    kube, ns, ctl, uid, stack = world
    name, orphan = f"fz-{uid}", f"fo-{uid}"
    topic, table = f"it{uid}d.fz.events", f"it{uid}d_fz.counts"
    apply(kube, ns, release(name, "fz"), uid)
    apply(kube, ns, release(orphan, "fo", "  annotations: {pipectl.dev/deletion-policy: orphan}\n"), uid)
    alice = token_for(ctl.state, "alice")
    t0 = time.monotonic()
    ctl.start()
    wait_for(lambda: promoted(kube, ns, name) and promoted(kube, ns, orphan), 120,
             "dev Succeeded and the finalizer on both objects", ctl.log)
    assert topic in topics() and tables(stack, [table]) == {table}

    t1 = time.monotonic()
    kube.kubectl("delete", "pipelinerelease", name, orphan, "-n", ns, "--wait=false")
    wait_for(lambda: get(kube, ns, orphan) is None, 60, "the orphan object gone", ctl.log)
    assert f"it{uid}d.fo.events" in topics()  # orphan: its resources are left in place
    wait_for(lambda: "pipectl approve" in ready(kube, ns, name).get("message", ""), 60,
             "the deletion waiting for approvals", ctl.log)
    cond = ready(kube, ns, name)
    assert (cond["status"], cond["reason"]) == ("False", "Deleting"), cond
    actions = re.findall(r"--destructive (\S+/delete)", cond["message"])
    assert sorted(actions) == sorted([f"Topic/{topic}/delete", f"Table/{table}/delete"]), cond["message"]
    assert f"pipectl approve {name} --stage dev --destructive Topic/{topic}/delete" in cond["message"]
    obj = get(kube, ns, name)
    assert obj is not None and obj["metadata"].get("deletionTimestamp")
    assert obj["metadata"]["finalizers"] == ["pipectl.dev/prune"]
    assert topic in topics() and tables(stack, [table]) == {table}  # nothing deleted without approval
    events = json.loads(kube.kubectl("get", "events", "-n", ns, "-o", "json",
                                     "--field-selector", f"involvedObject.name={name}").stdout)["items"]
    assert any(e["reason"] == "DeletionAwaitingApproval" and f"Topic/{topic}/delete" in e["message"]
               for e in events), [e["reason"] for e in events]

    server = f"http://127.0.0.1:{ctl.port}"
    env = {**os.environ, "PIPECTL_TOKEN": alice}
    for action in actions:
        r = subprocess.run([sys.executable, "-m", "controller.cli.main", "approve", name, "--stage", "dev",
                            "--destructive", action, "--server", server],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    wait_for(lambda: get(kube, ns, name) is None, 90, "the object deleted once pruned", ctl.log)
    assert topic not in topics() and tables(stack, [table]) == set()
    print(f"promoted in {t1 - t0:.1f}s; deleted with approvals in {time.monotonic() - t1:.1f}s; "
          f"total {time.monotonic() - t0:.1f}s")
