"""``pipectl controller run --source kubernetes`` against the stack's real kube-apiserver, Kafka
and Hive: a PipelineRelease created with kubectl is reconciled as a git manifest would be.

- the CRD is applied; the repo (``--repo``) holds only the environments dev and staging;
- a release with a topic and a table, created with ``kubectl apply`` in the test namespace, is
  promoted dev → staging by a real controller process: the topics exist under both prefixes, the
  object's status (status subresource) has both stages Succeeded, Ready/Progressing conditions and
  ``observedGeneration``; ``kubectl get pipelinereleases`` shows VERSION, STAGE, PHASE, GATES;
  a ``Promoted`` Event about the object exists for each stage; its audit records name the object;
- an object the pydantic model refuses (a stage no environment defines) is Invalid, and its Ready
  condition names ``namespace/name`` and the field path;
- the objects are watched (``controller/engine/kube_watch.py``): with ``--interval`` and
  ``--resync`` at 300 s, ``kubectl apply`` of a new version starts its pass within 5 s (the
  ``started_at`` of its first audit record) and promotes it, and the controller made one LIST in all
  (``pipectl_kube_requests_total{verb="list"}`` on /metrics);
- a watch from a resourceVersion older than the server keeps raises ``WatchExpired`` (410 Gone).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka.admin import AdminClient
from ctlkit import Ctl, drop_everything, free_port, init_repo, pipectl, stage_env_yaml, token_for, wait_for
from kubekit import Kube, connect
from kubernetes import client

from controller.adapters.kube import GROUP, PLURAL, VERSION, KubeApi, WatchExpired


def release(name: str, stages: str = "[dev, staging]") -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - name: ks.events
      partitions: 1
      replicationFactor: 1
  tables:
    - name: ks.counts
      columns: [{{name: k, type: string}}, {{name: cnt, type: bigint}}]
  rollout:
    stages: {stages}
"""


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Kube, str, Ctl, str]]:
    kube = connect()
    kube.apply_crd()
    ns = kube.ensure_namespace()
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin"))
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "config.yaml"))
    uid, dags = unique_name, stack["airflow_dags_folder"]
    repo = init_repo(tmp_path, {
        "environments/dev.yaml": stage_env_yaml("dev", f"it{uid}d.", f"it{uid}d_", dags),
        "environments/staging.yaml": stage_env_yaml("staging", f"it{uid}s.", f"it{uid}s_", dags),
    }, "environments")
    state = tmp_path / "state" / "state.db"
    state.parent.mkdir(parents=True)
    # no periodic refresh or re-list within the test: only the watch can wake the controller
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log", interval="300s",
              extra_args=["--source", "kubernetes", "--namespace", ns, "--resync", "300s"])
    yield kube, ns, ctl, uid
    ctl.stop()
    kube.delete_releases(ns, f"it={uid}")
    drop_everything(uid, [f"it{uid}d_ks", f"it{uid}s_ks"], dags, None)


def apply(kube: Kube, ns: str, text: str, uid: str) -> None:
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=text.replace("metadata:\n", f"metadata:\n  labels: {{it: {uid}}}\n"))


def get(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name))


def staged(kube: Kube, ns: str, name: str, version: str = "1.0.0") -> bool:
    stages = get(kube, ns, name).get("status", {}).get("stages", {})
    return all((stages.get(s, {}).get("phase"), stages.get(s, {}).get("version")) == ("Succeeded", version)
               for s in ("dev", "staging"))


def kube_lists(ctl: Ctl, token: str) -> float:
    req = urllib.request.Request(f"http://127.0.0.1:{ctl.port}/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    m = re.search(r'^pipectl_kube_requests_total\{verb="list"\} (\S+)$', text, re.M)
    assert m, text[-2000:]
    return float(m.group(1))


def test_an_object_created_with_kubectl_is_promoted_through_the_stages(world) -> None:  # type: ignore[no-untyped-def]
    kube, ns, ctl, uid = world
    name, bad = f"ks-{uid}", f"ks-{uid}-bad"
    apply(kube, ns, release(name), uid)
    apply(kube, ns, release(bad, "[dev, nowhere]"), uid)
    t0 = time.monotonic()
    ctl.start()
    wait_for(lambda: staged(kube, ns, name), 150, "dev and staging Succeeded on the object", ctl.log)
    took = time.monotonic() - t0

    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    want = {f"it{uid}d.ks.events", f"it{uid}s.ks.events"}  # a topic created a moment ago may lag in metadata
    wait_for(lambda: want <= set(admin.list_topics(timeout=10).topics), 10, f"topics {want}", ctl.log)
    obj = get(kube, ns, name)
    st = obj["status"]
    assert (st["currentStage"], st["phase"], st["version"]) == ("staging", "Succeeded", "1.0.0"), st
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds["Ready"][0] == "True" and conds["Progressing"] == ("False", "ReconciliationSucceeded"), conds

    out = kube.kubectl("get", "pipelinereleases", "-n", ns, name).stdout.splitlines()
    assert out[0].split() == ["NAME", "VERSION", "STAGE", "PHASE", "GATES", "AGE"], out
    assert out[1].split()[:5] == [name, "1.0.0", "staging", "Succeeded", "-"], out

    events = json.loads(kube.kubectl("get", "events", "-n", ns, "-o", "json",
                                     "--field-selector", f"involvedObject.name={name}").stdout)["items"]
    promoted = sorted(e["message"] for e in events if e["reason"] == "Promoted")
    assert promoted == ["1.0.0 succeeded at stage dev", "1.0.0 succeeded at stage staging"], events
    assert all(e["involvedObject"]["uid"] == obj["metadata"]["uid"] for e in events)

    wait_for(lambda: get(kube, ns, bad).get("status", {}).get("phase") == "Invalid", 30, "Invalid", ctl.log)
    ready = next(c for c in get(kube, ns, bad)["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ValidationFailed" and ready["message"].startswith(f"{ns}/{bad}:"), ready
    assert "spec.rollout.stages" in ready["message"] and "nowhere" in ready["message"], ready
    records = json.loads(pipectl("audit", name, "--state", f"sqlite:///{ctl.state}", "-o", "json").stdout)
    assert records and all(r["details"]["object"] == {
        "namespace": ns, "name": name, "uid": obj["metadata"]["uid"], "generation": obj["metadata"]["generation"],
    } for r in records), records[:2]
    print(f"promoted dev and staging {took:.1f}s after start")
    watched_new_version_starts_at_once(kube, ns, ctl, uid, name)


def watched_new_version_starts_at_once(kube: Kube, ns: str, ctl: Ctl, uid: str, name: str) -> None:
    applied = time.time()
    apply(kube, ns, release(name).replace("version: 1.0.0", "version: 1.1.0"), uid)
    wait_for(lambda: staged(kube, ns, name, "1.1.0"), 60, "1.1.0 Succeeded at dev and staging", ctl.log)
    promoted = time.time() - applied
    records = json.loads(pipectl("audit", name, "--state", f"sqlite:///{ctl.state}", "-o", "json").stdout)
    first = min(datetime.fromisoformat(r["started_at"]).timestamp() for r in records if r.get("version") == "1.1.0")
    assert first - applied < 5, (first - applied, [(r["kind"], r.get("version"), r["started_at"]) for r in records])
    assert kube_lists(ctl, token_for(ctl.state, "it-prometheus")) == 1
    print(f"1.1.0: pass started {first - applied:.2f}s after kubectl apply, promoted in {promoted:.1f}s; 1 LIST")


def test_a_watch_from_a_too_old_version_is_expired_and_one_from_the_list_is_not() -> None:
    kube = connect()
    kube.apply_crd()
    api = KubeApi(kube.api)
    with pytest.raises(WatchExpired):
        list(api.watch_scope(None, "1", 2))  # the real 410 Gone the watch re-lists on
    _, version = api.list_scope(None)
    assert all(e["type"] != "ERROR" for e in api.watch_scope(None, version, 1))
