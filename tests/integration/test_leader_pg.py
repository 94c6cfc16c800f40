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

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from controller.engine.leader_pg import PgAdvisoryElector
from controller.store.db import Store
from controller.store.fencing import FencedOut
from tests.integration.ctlkit import (
    ROOT,
    TOKEN,
    cleanup,
    commit,
    free_port,
    git,
    make_repo,
    release_yaml,
    wait_for,
)

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


class PgCtl:
    """``pipectl controller run`` on a PostgreSQL state store, in a working directory of its own."""

    def __init__(self, name: str, repo: Path, url: str, home: Path):
        self.name, self.repo, self.url, self.home = name, repo, url, home
        self.port = free_port()
        self.log = home / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PIPECTL_LEADER_ELECTION", "PIPECTL_STATE")}
        env.update(PIPECTL_WEBHOOK_SECRET=TOKEN, PIPECTL_LEADER_LOCK_SECONDS=str(LOCK_SECONDS),
                   PIPECTL_CONFIG=str(self.home / "config.yaml"), PYTHONPATH=str(ROOT))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli.main", "controller", "run", "--repo", str(self.repo),
                 "--state", self.url, "--listen", f"127.0.0.1:{self.port}", "--interval", "2s",
                 "--no-write-context"],
                cwd=self.home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def leads(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(json.loads(r.read()).get("leader"))
        except OSError:  # a standby may not serve its API at all; a 503 body is not leading either
            return False

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        out = []
        for line in self.text()[since:].splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def applied(self, since: int = 0) -> list[str]:
        """Actions this controller applied (``action applied``, also ``…; waiting for the backend``)."""
        return [e["action"] for e in self.events(since) if str(e.get("event", "")).startswith("action applied")]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


def release_v2(name: str) -> str:
    """1.1.0: a longer retention, a second topic, a second table and its view: three waves."""
    text = release_yaml(name, "1.1.0", "7200000", True, True)
    return text.replace(
        "  views:\n",
        "    - name: rc.totals\n      columns: [{name: k, type: string}, {name: n, type: bigint}]\n"
        "  views:\n    - name: rc.totals_v\n      table: rc.totals\n",
    )


def dev_is(url: str, name: str, version: str) -> bool:
    store = Store(url)
    try:
        st = ((store.get_status(name) or {}).get("stages") or {}).get("dev") or {}
    finally:
        store.close()
    return bool(st.get("version") == version and st.get("phase") == "Succeeded")


def test_two_controllers_one_leader_pg(
    stack: dict[str, Any], pg_url: str, unique_name: str, tmp_path: Path
) -> None:
    name = f"rc{unique_name}"
    repo = make_repo(tmp_path, unique_name, name, stack["airflow_dags_folder"], with_dag=True)
    v1 = (repo / "releases" / "rc.yaml").read_text()
    git(repo, "rm", "-q", "releases/rc.yaml")  # both controllers start with nothing to do
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "no release yet")
    a = PgCtl("a", repo, pg_url, tmp_path / "host-a")
    b = PgCtl("b", repo, pg_url, tmp_path / "host-b")
    a2 = PgCtl("a2", repo, pg_url, tmp_path / "host-a")
    try:
        # One leads: a starts first and takes the lock; b stands by.
        a.start()
        wait_for(a.leads, 60, "a leads", a.log)
        b.start()
        wait_for(lambda: "standing by" in b.text(), 60, "b standing by", b.log)
        assert a.leads() and not b.leads()

        # Commit 1.0.0 (database, topic, table, view, DAG: five waves); kill -9 the leader as soon
        # as it has applied its first action.
        (repo / "releases").mkdir(exist_ok=True)
        commit(repo, v1, "1.0.0")
        deadline = time.monotonic() + 120
        while not a.applied():
            assert time.monotonic() < deadline, "a applied nothing:\n" + a.text()[-3000:]
            time.sleep(0.05)
        a.signal(signal.SIGKILL)
        killed = time.monotonic()
        assert a.proc is not None and a.proc.wait(timeout=30) == -signal.SIGKILL
        by_a = a.applied()
        wait_for(lambda: "leader_acquired" in b.text(), 30, "b takes over", b.log)
        takeover = time.monotonic() - killed
        assert takeover < LOCK_SECONDS + 4, takeover  # the lock timeout plus b's 2 s acquire poll
        wait_for(lambda: dev_is(pg_url, name, "1.0.0"), 240, "b converges dev on 1.0.0", b.log)
        by_b = b.applied()
        assert by_a and by_b, (by_a, by_b)  # the kill landed mid-promotion: each applied a part
        assert not set(by_a) & set(by_b), (by_a, by_b)  # nothing applied twice
        store = Store(pg_url)
        journal = {r["action_id"]: r["state"] for r in store.journal_rows(name)}
        assert set(by_a) | set(by_b) <= set(journal), journal
        assert {x for x, st in journal.items() if st == "done"} <= set(by_a) | set(by_b), journal
        # "started" only where a was cut off and a later plan found the change in place
        assert {x for x, st in journal.items() if st not in ("done", "skipped")} <= (
            {x for x, st in journal.items() if st == "started"} - set(by_b)
        ), journal

        # The first host comes back as a standby; 1.1.0 is committed; pause b mid-promotion.
        a2.start()
        wait_for(lambda: "standing by" in a2.text(), 60, "a2 standing by", a2.log)
        mark = len(b.text())
        commit(repo, release_v2(name), "1.1.0")
        wait_for(lambda: bool(b.applied(mark)), 120, "b applies an action of 1.1.0", b.log)
        b.signal(signal.SIGSTOP)
        paused_after = b.applied(mark)
        paused = wait_for(lambda: "leader_acquired" in a2.text(), LOCK_SECONDS + 10,
                          "a2 takes over from the paused b", a2.log)
        wait_for(lambda: dev_is(pg_url, name, "1.1.0"), 240, "a2 converges dev on 1.1.0", a2.log)
        resumed = len(b.text())
        b.signal(signal.SIGCONT)
        assert b.proc is not None and b.proc.wait(timeout=60) == 0  # a demoted controller stops
        after = b.text()[resumed:]
        assert b.applied(resumed) == [], after  # the resumed old leader applied nothing more
        fenced = "FencedOut" in after
        assert fenced or "lost leadership" in after, after
        by_a2 = a2.applied()
        assert not set(paused_after) & set(by_a2), (paused_after, by_a2)
        rows = store.journal_rows(name)
        assert {r["state"] for r in rows} <= {"done", "skipped", "started"}, rows
        assert dev_is(pg_url, name, "1.1.0")
        store.close()
        print(f"takeover after kill -9: {takeover:.1f}s, after SIGSTOP: {paused:.1f}s; "
              f"resumed old leader fenced: {fenced}")
    finally:
        for c in (a, b, a2):
            c.stop()
        cleanup(stack, unique_name, name)
