"""HA without Kubernetes, against the local stack's real PostgreSQL (port 5433): leader election with
``PgAdvisoryElector`` and the fencing token checked in the journal write's transaction.

* ``test_advisory_lock_and_fencing_on_postgresql``: two electors on one state store; the server ends
  the paused leader's idle session after the lock timeout, the other takes the next epoch, and the
  old leader's journal write is refused (``FencedOut``) while the new one's goes through; a leader
  whose session ended while nobody took over takes the lock back with the same epoch.
* ``test_two_controllers_one_leader_pg``: two ``pipectl controller run`` processes (own working
  directories, like two hosts) share one PostgreSQL state store and no Kubernetes: exactly one
  leads; the leader is killed (-9) mid-promotion, the other takes over within the lock timeout and
  converges with no action applied twice; that leader is then paused (SIGSTOP) mid-promotion of the
  next version, the restarted first controller takes over, and the resumed old leader applies
  nothing more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from controller.engine.leader_pg import PgAdvisoryElector
from controller.store.db import Store
from controller.store.fencing import FencedOut
from tests.integration.ctlkit import ROOT, cleanup, make_repo
from tests.integration.leaderkit import Ctl, two_controllers_one_leader

LOCK_SECONDS = 6  # PIPECTL_LEADER_LOCK_SECONDS: a paused leader's session ends after this long idle


def test_advisory_lock_and_fencing_on_postgresql(pg_url: str) -> None:
    a = PgAdvisoryElector(pg_url, "ctl-a", idle_seconds=5)
    b = PgAdvisoryElector(pg_url, "ctl-b", idle_seconds=5)
    store_a, store_b = Store(pg_url), Store(pg_url)
    try:
        assert a.acquire() is True and a.fencing_token == 1
        assert b.acquire() is False and b.holder() == "ctl-a (epoch 1)"
        store_a.fencing_token = a.fencing_token
        store_a.journal_begin("run-a", "r", "dev", "intent", "Topic/dev.t/create", "{}")
        store_a.journal_end("intent", "Topic/dev.t/create", "done")
        assert a.renew() is True

        time.sleep(7)  # ctl-a "paused": no renewal, so the server ends its idle session (5 s)
        assert b.acquire() is True and b.fencing_token == 2
        assert b.holder() == "ctl-b (epoch 2)"
        assert a.renew() is False and not a.is_leader

        with pytest.raises(FencedOut, match="fencing token 1 is not the current leader epoch 2"):
            store_a.journal_begin("run-a", "r", "dev", "intent", "Topic/dev.u/create", "{}")
        store_b.fencing_token = b.fencing_token
        store_b.journal_begin("run-b", "r", "dev", "intent", "Topic/dev.v/create", "{}")
        rows = {r["action_id"]: (r["run_id"], r["state"]) for r in store_b.journal_rows("r")}
        assert rows == {"Topic/dev.t/create": ("run-a", "done"), "Topic/dev.v/create": ("run-b", "started")}

        b.release()  # let go at once: no waiting for a timeout
        assert a.acquire() is True and a.fencing_token == 3
        time.sleep(7)  # the server ends a's idle session again, but nobody takes over meanwhile
        assert a.renew() is True and a.fencing_token == 3  # taken back on a new session, same epoch
        assert b.acquire() is False and b.holder() == "ctl-a (epoch 3)"
        a._lock.close()  # the session is gone, as after an outage of the store; nobody led meanwhile
        assert a.renew() is True and a.fencing_token == 3 and b.acquire() is False
    finally:
        a.release()
        b.release()
        store_a.close()
        store_b.close()


def test_cli_verbs_are_refused_while_a_controller_leads_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """``pipectl backfill`` on another host (its own working directory) asks the same advisory lock."""
    ctl = PgAdvisoryElector(pg_url, "ctl-host-1", idle_seconds=15)
    assert ctl.acquire()
    env = {k: v for k, v in os.environ.items() if k not in ("PIPECTL_LEADER_ELECTION", "PIPECTL_STATE")}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "controller.cli.main", "backfill", "rc", "--stage", "dev", "--from",
             "2026-03-01", "--to", "2026-03-01", "--repo", str(tmp_path / "no-repo"), "--state", pg_url],
            cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        )
    finally:
        ctl.release()
    assert r.returncode == 1, r.stderr
    assert "pipectl backfill: the leader lock is held (ctl-host-1 (epoch 1))" in r.stderr, r.stderr


# --- two controller processes ---------------------------------------------------------------------


def test_two_controllers_one_leader_pg(
    stack: dict[str, Any], pg_url: str, unique_name: str, tmp_path: Path
) -> None:
    """The scenario of ``leaderkit.two_controllers_one_leader`` with the advisory lock: a killed
    leader's lock is freed when the server sees its connection close, a paused one's after
    ``LOCK_SECONDS`` idle."""
    name = f"rc{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"], with_dag=True)

    def make(who: str, home: Path) -> Ctl:
        return Ctl(who, repo, pg_url, home, {"PIPECTL_LEADER_LOCK_SECONDS": str(LOCK_SECONDS)})

    try:
        # the lock timeout plus b's 2 s acquire poll
        took = two_controllers_one_leader(pg_url, name, repo, make, LOCK_SECONDS, LOCK_SECONDS + 4)
        print(f"takeover after kill -9: {took.after_kill:.1f}s, after SIGSTOP: {took.after_pause:.1f}s; "
              f"resumed old leader fenced: {took.fenced}")
    finally:
        cleanup(stack, unique_name, name)
