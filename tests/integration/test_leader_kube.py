"""HA in Kubernetes, against the local stack's real kube-apiserver and PostgreSQL: two
``pipectl controller run`` processes elect through a ``coordination.k8s.io/v1`` Lease
(``PIPECTL_LEADER_ELECTION=lease``, ``controller/engine/leader_lease.py``) and share one PostgreSQL
state store, where each takes the next leader epoch as its fencing token on winning the Lease.

``test_two_controllers_one_leader`` runs ``leaderkit.two_controllers_one_leader``: exactly one leads;
the leader is killed (-9) mid-promotion, the other takes over once the Lease expires and converges
with no action applied twice; that leader is paused (SIGSTOP) mid-promotion of the next version,
the restarted first controller takes over, and the resumed old leader applies nothing more. Then the
store itself refuses a write carrying the paused leader's epoch, and the Lease and the
``leader_epoch`` row both name the last leader.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy import select

from controller.store.db import Store
from controller.store.fencing import FencedOut, leader_epoch
from tests.integration.ctlkit import cleanup, make_repo
from tests.integration.kubekit import Kube, connect
from tests.integration.leaderkit import Ctl, two_controllers_one_leader

LEASE_SECONDS = 6  # PIPECTL_LEADER_LOCK_SECONDS: the Lease's duration (renew deadline 4 s)


@pytest.fixture(scope="module")
def kube() -> Kube:
    return connect()


def test_two_controllers_one_leader(
    stack: dict[str, Any], kube: Kube, pg_url: str, unique_name: str, tmp_path: Path
) -> None:
    ns = kube.ensure_namespace()
    lease = f"pipectl-it-{uuid.uuid4().hex[:6]}"
    name = f"rc{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"], with_dag=True)

    def make(who: str, home: Path) -> Ctl:
        return Ctl(who, repo, pg_url, home, {
            "PIPECTL_LEADER_ELECTION": "lease", "PIPECTL_LEASE_NAME": lease, "POD_NAMESPACE": ns,
            "POD_NAME": f"ctl-{who}", "KUBECONFIG": str(kube.kubeconfig),
            "PIPECTL_LEADER_LOCK_SECONDS": str(LEASE_SECONDS),
        })

    try:
        # The standby judges expiry from when it saw the last renewal (up to one 2 s poll after it),
        # then polls every 2 s: at most the lease plus two polls, and a second for the log.
        took = two_controllers_one_leader(pg_url, name, repo, make, LEASE_SECONDS, LEASE_SECONDS + 5)
        spec = client.CoordinationV1Api(kube.api).read_namespaced_lease(lease, ns).spec
        assert spec.holder_identity in (None, "ctl-a2")  # a2 released it when it stopped (or was killed)
        assert spec.lease_transitions == 2  # a created it, b took it from a, a2 from b
        store = Store(pg_url)
        with store.tx() as c:
            row = c.execute(select(leader_epoch.c.epoch, leader_epoch.c.holder)).one()
        assert tuple(row) == (3, "ctl-a2")
        store.fencing_token = 2  # the paused b's token: the store refuses it, whatever b does
        with pytest.raises(FencedOut, match="fencing token 2 is not the current leader epoch 3"):
            store.kv_put(f"fence-probe/{name}", "{}")
        store.close()
        print(f"Lease {LEASE_SECONDS}s: takeover after kill -9: {took.after_kill:.1f}s, after SIGSTOP: "
              f"{took.after_pause:.1f}s; resumed old leader fenced: {took.fenced}")
    finally:
        cleanup(stack, unique_name, name)
