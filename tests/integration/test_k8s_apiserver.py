"""The project's Kubernetes pieces against the stack's real kube-apiserver (v1.34.4 on etcd):

- the generated CRD (crds/pipelinerelease.yaml) is accepted and established, the example release
  (manifests/releases/host-metrics.yaml) is accepted as written, a spec the schema forbids is
  refused by the server, and ``kubectl get pipelinereleases`` prints the printer columns;
- ``StatusMirror`` (controller/engine/k8s_status.py) writes a release's status to the status
  subresource of a real object, replaces it whole, and skips a missing object;
- ``LeaseElector`` (controller/engine/leader_lease.py) with two candidates on a real Lease: exactly one
  leads; on release the other takes over at once, on expiry within the lease duration; a holder
  whose lease was taken over, or overwritten behind its back, reports the loss.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import yaml
from kubekit import ROOT, Kube, connect
from kubernetes import client

from controller.engine.k8s_status import GROUP, PLURAL, VERSION, StatusMirror
from controller.engine.leader import LeadershipKeeper
from controller.engine.leader_lease import LeaseElector
from controller.model.status import Phase, ReleaseStatus, StageStatus

LEASE_SECONDS = 3


@pytest.fixture(scope="module")
def kube() -> Kube:
    k = connect()
    k.apply_crd()
    return k


@pytest.fixture(scope="module")
def ns(kube: Kube) -> str:
    return kube.ensure_namespace()


def _example(name: str) -> str:
    doc = yaml.safe_load((ROOT / "manifests" / "releases" / "host-metrics.yaml").read_text())
    doc["metadata"]["name"] = name
    return yaml.safe_dump(doc)


def test_crd_accepts_the_example_release_and_kubectl_lists_it(kube: Kube, ns: str) -> None:
    name = f"host-metrics-{uuid.uuid4().hex[:6]}"
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=_example(name))
    try:
        obj = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        assert obj["spec"]["version"] == "1.0.0" and obj["spec"]["topics"][0]["partitions"] == 6
        out = kube.kubectl("get", "pipelinereleases", "-n", ns, name).stdout
        header, row = out.splitlines()[:2]
        assert header.split() == ["NAME", "VERSION", "STAGE", "PHASE", "GATES", "AGE"]
        assert row.split()[:2] == [name, "1.0.0"]
        # The structural schema is enforced by the server, not only by pipectl validate.
        bad = yaml.safe_load(_example(name + "-bad"))
        bad["spec"]["topics"][0]["partitions"] = "six"
        refused = kube.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(bad), check=False)
        assert refused.returncode != 0 and "partitions" in refused.stderr, refused.stderr
    finally:
        kube.kubectl("delete", "pipelinerelease", "-n", ns, name, "--wait=false")


def test_status_mirror_writes_the_status_subresource(kube: Kube, ns: str) -> None:
    name = f"mirrored-{uuid.uuid4().hex[:6]}"
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=_example(name))
    mirror = StatusMirror(client.CustomObjectsApi(kube.api), ns)
    now = datetime.now(UTC).replace(microsecond=0)
    status = ReleaseStatus(version="1.0.0", current_stage="staging", phase=Phase.PROGRESSING, stages={
        "dev": StageStatus(version="1.0.0", phase=Phase.SUCCEEDED, last_transition_time=now),
        "staging": StageStatus(version="1.0.0", phase=Phase.PROGRESSING, reason="Applying"),
    })
    try:
        assert mirror.mirror(name, status) is True
        obj = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        assert obj["status"]["currentStage"] == "staging" and obj["status"]["phase"] == "Progressing"
        assert set(obj["status"]["stages"]) == {"dev", "staging"}
        assert obj["spec"]["version"] == "1.0.0"  # the spec is untouched
        row = kube.kubectl("get", "pipelinereleases", "-n", ns, name, "--no-headers").stdout.split()
        assert row[:4] == [name, "1.0.0", "staging", "Progressing"]
        # The whole status is replaced: a stage gone from git leaves no trace.
        status.stages.pop("staging")
        status.current_stage, status.phase = "dev", Phase.SUCCEEDED
        assert mirror.mirror(name, status) is True
        obj = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        assert set(obj["status"]["stages"]) == {"dev"} and obj["status"]["phase"] == "Succeeded"
        # A release never applied as an object is skipped, not an error.
        assert mirror.mirror(f"absent-{uuid.uuid4().hex[:6]}", status) is False
    finally:
        kube.kubectl("delete", "pipelinerelease", "-n", ns, name, "--wait=false")


def _electors(kube: Kube, ns: str) -> tuple[str, LeaseElector, LeaseElector]:
    lease = f"pipectl-it-{uuid.uuid4().hex[:6]}"
    api = client.CoordinationV1Api(kube.api)
    return lease, LeaseElector(lease, ns, "cand-a", LEASE_SECONDS, api=api), \
        LeaseElector(lease, ns, "cand-b", LEASE_SECONDS, api=api)


def _holder(kube: Kube, ns: str, lease: str) -> str | None:
    spec = client.CoordinationV1Api(kube.api).read_namespaced_lease(lease, ns).spec
    return spec.holder_identity if spec else None


def test_two_candidates_one_leader_and_release_hands_over_at_once(kube: Kube, ns: str) -> None:
    lease, a, b = _electors(kube, ns)
    assert a.acquire() is True
    assert b.acquire() is False
    assert (a.is_leader, b.is_leader) == (True, False)
    assert _holder(kube, ns, lease) == "cand-a"
    for _ in range(3):  # renewals keep it; the standby keeps waiting
        time.sleep(0.5)
        assert a.renew() is True and b.acquire() is False
    a.release()
    assert not a.is_leader and _holder(kube, ns, lease) is None
    t0 = time.monotonic()
    assert b.acquire() is True
    assert time.monotonic() - t0 < 1.0
    assert _holder(kube, ns, lease) == "cand-b" and a.acquire() is False
    b.release()


def test_expired_lease_is_taken_over_within_the_lease_duration_and_the_old_holder_learns_it(
    kube: Kube, ns: str
) -> None:
    lease, a, b = _electors(kube, ns)
    assert a.acquire() is True
    assert b.acquire() is False
    # a stops renewing (a paused or dead process); b keeps trying every 0.2 s.
    last_renewal = time.monotonic()
    assert a.renew() is True
    while not b.acquire():
        assert time.monotonic() - last_renewal < LEASE_SECONDS + 2, "standby never took over"
        time.sleep(0.2)
    took = time.monotonic() - last_renewal
    # b judges expiry from when it saw a's last renewal, never earlier than a full lease.
    assert LEASE_SECONDS - 0.5 <= took <= LEASE_SECONDS + 1.0, took
    assert _holder(kube, ns, lease) == "cand-b"
    # The old holder resumes: its renewal finds b's live lease and it steps down.
    assert a.renew() is False and not a.is_leader
    assert b.renew() is True
    b.release()


def test_keeper_reports_loss_when_the_lease_is_overwritten(kube: Kube, ns: str) -> None:
    lease, a, _ = _electors(kube, ns)
    assert a.acquire() is True
    lost = threading.Event()
    keeper = LeadershipKeeper(a, on_lost=lost.set, period=0.3)
    keeper.start()
    try:
        time.sleep(1.0)
        assert not lost.is_set()  # renewals succeed against the real server
        # Someone else (an operator, another controller) writes the lease.
        kube.kubectl("patch", "lease", lease, "-n", ns, "--type=merge",
                     "-p", '{"spec": {"holderIdentity": "intruder"}}')
        assert lost.wait(LEASE_SECONDS), "the keeper did not report the lost lease"
        assert not a.is_leader
    finally:
        keeper.stop()
    assert _holder(kube, ns, lease) == "intruder"
