"""Two ``pipectl controller run`` processes on one PostgreSQL state store, and the scenario both HA
tests run (``test_leader_pg.py``: the advisory lock; ``test_leader_kube.py``: a Lease on the real
kube-apiserver): exactly one leads; the leader is killed (-9) mid-promotion, the other takes over
and converges with no action applied twice; that leader is then paused (SIGSTOP) mid-promotion of
the next version, the restarted first controller takes over, and the resumed old leader applies
nothing more."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.store.db import Store
from tests.integration.ctlkit import ROOT, TOKEN, commit, free_port, git, release_yaml, wait_for


class Ctl:
    """``pipectl controller run`` on a PostgreSQL state store, in a working directory of its own
    (like another host); ``env``: how it elects (``PIPECTL_LEADER_ELECTION`` and its settings)."""

    def __init__(self, name: str, repo: Path, url: str, home: Path, env: dict[str, str]):
        self.name, self.repo, self.url, self.home, self.env = name, repo, url, home, env
        self.port = free_port()
        self.log = home / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PIPECTL_LEADER_ELECTION", "PIPECTL_STATE")}
        env.update(PIPECTL_WEBHOOK_SECRET=TOKEN, PIPECTL_CONFIG=str(self.home / "config.yaml"),
                   PYTHONPATH=str(ROOT), **self.env)
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

    def epochs(self) -> list[int | None]:
        """The fencing epochs this controller led with (its ``leader_acquired`` lines)."""
        return [e.get("epoch") for e in self.events() if e.get("event") == "leader_acquired"]

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


@dataclass
class Takeovers:
    after_kill: float  # seconds from kill -9 of the leader to the standby's leader_acquired line
    after_pause: float  # seconds from SIGSTOP of the next leader to the restarted one's
    fenced: bool  # the resumed old leader logged a refused write (FencedOut), not only its lost lease
    resumed_log: str  # what it logged after SIGCONT


def two_controllers_one_leader(
    url: str, name: str, repo: Path, make: Callable[[str, Path], Ctl], lease_seconds: float, max_takeover: float
) -> Takeovers:
    """Run the scenario (``repo``: a repo with ``releases/rc.yaml`` at 1.0.0; ``make(name, home)``:
    a controller; ``lease_seconds``: how long a silent leader keeps leadership; ``max_takeover``:
    the standby leads within this many seconds of the kill). Controllers are stopped on the way
    out; the journal and the logs are checked here."""
    v1 = (repo / "releases" / "rc.yaml").read_text()
    git(repo, "rm", "-q", "releases/rc.yaml")  # both controllers start with nothing to do
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "no release yet")
    root = repo.parent
    a, b, a2 = make("a", root / "host-a"), make("b", root / "host-b"), make("a2", root / "host-a")
    try:
        # One leads: a starts first and takes leadership; b stands by.
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
        wait_for(lambda: "leader_acquired" in b.text(), lease_seconds + 10, "b takes over", b.log)
        after_kill = time.monotonic() - killed
        assert after_kill < max_takeover, after_kill
        wait_for(lambda: dev_is(url, name, "1.0.0"), 240, "b converges dev on 1.0.0", b.log)
        by_b = b.applied()
        assert by_a and by_b, (by_a, by_b)  # the kill landed mid-promotion: each applied a part
        assert not set(by_a) & set(by_b), (by_a, by_b)  # nothing applied twice
        store = Store(url)
        journal = {r["action_id"]: r["state"] for r in store.journal_rows(name)}
        assert set(by_a) | set(by_b) <= set(journal), journal
        # The kill can land after an action's journal end and before its "action applied" line (seen
        # in CI: a's Kafka adapter logged the topic created, the journal said done, the line never
        # came). At most that one action is done unlogged, and a's adapter logged applying it.
        unlogged = {x for x, st in journal.items() if st == "done"} - set(by_a) - set(by_b)
        assert len(unlogged) <= 1, (unlogged, journal)
        assert all(f'"action": "{x}"' in a.text() for x in unlogged), (unlogged, a.text()[-3000:])
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
        time.sleep(0.2)  # delivered to every thread by now
        paused_at = datetime.now(UTC)
        paused_after = b.applied(mark)
        after_pause = wait_for(lambda: "leader_acquired" in a2.text(), lease_seconds + 10,
                               "a2 takes over from the paused b", a2.log)
        wait_for(lambda: dev_is(url, name, "1.1.0"), 240, "a2 converges dev on 1.1.0", a2.log)
        resumed = len(b.text())
        b.signal(signal.SIGCONT)
        assert b.proc is not None and b.proc.wait(timeout=60) == 0  # a demoted controller stops
        after = b.text()[resumed:]
        # The resumed old leader applied nothing more: an "action applied" line it writes after
        # SIGCONT is only ever that of an action whose journal end it committed before the pause (a
        # thread stopped between its commit and its log line); every write after it is refused.
        for e in b.events(resumed):
            if str(e.get("event", "")).startswith("action applied"):
                row = [r for r in store.journal_rows(name, e["run_id"]) if r["action_id"] == e["action"]]
                assert [r["state"] for r in row] == ["done"], (e, row)
                assert row[0]["finished_at"] < paused_at, (e, row, paused_at)
        fenced = "FencedOut" in after
        assert fenced or "lost leadership" in after, after
        by_a2 = a2.applied()
        assert not set(b.applied(mark)) & set(by_a2), (b.applied(mark), paused_after, by_a2)
        rows = store.journal_rows(name)
        assert {r["state"] for r in rows} <= {"done", "skipped", "started"}, rows
        assert dev_is(url, name, "1.1.0")
        # Each took the next fencing epoch when it won: 1, 2, 3; b's token 2 is refused from now on.
        assert (a.epochs(), b.epochs(), a2.epochs()) == ([1], [2], [3])
        store.close()
        return Takeovers(after_kill, after_pause, fenced, after)
    finally:
        for c in (a, b, a2):
            c.stop()
