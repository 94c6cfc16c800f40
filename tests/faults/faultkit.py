"""Helpers of the fault-injection tests: a release without Spark jobs promoted through several
stages by a real ``pipectl controller run`` (ctlkit.Ctl), a status watcher that records every
phase it sees, the devstack's ``down``/``up --only``, the journal's full history (SQLite triggers)
and the backends' own view of what was applied."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import AdminClient
from ctlkit import ROOT, TOKEN, Ctl, commit_files, pg_urls, topic_config

from controller.store.db import Store

BOOTSTRAP = "127.0.0.1:9092"
RETENTION = "3600000"

# Presto can read the stage's table (passes on an empty table): a quick real gate at every stage
READABLE: dict[str, Any] = {
    "name": "table-readable",
    "type": "dataQuality",
    "query": "SELECT count(*) FROM rc.counts",
    "expect": ">= 0",
}


def short(stage: str) -> str:
    """The name part of a stage's prefixes (a canary runs in its target's installation)."""
    return {"staging": "stg", "prod": "prd", "canary": "prd"}.get(stage, stage)


class FaultCtl(Ctl):
    """ctlkit.Ctl with any state URL, working directory and extra environment."""

    def __init__(self, repo: Path, url: str, port: int, log: Path, cwd: Path, env: dict[str, str]):
        super().__init__(repo, Path("unused"), port, log)
        self.url, self.cwd, self.env = url, cwd, env

    def start(self) -> None:
        env = {**os.environ, "PIPECTL_WEBHOOK_SECRET": TOKEN, **self.env}
        argv = [sys.executable, "-m", "controller.cli.main", "controller", "run", "--repo", str(self.repo),
                "--state", self.url, "--listen", f"127.0.0.1:{self.port}", "--interval", self.interval]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("controller did not come up:\n" + self.log.read_text()[-3000:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers(self) -> bool:
        """The process serves HTTP (/healthz answers, 200 or 503)."""
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True


@dataclass
class World:
    uid: str
    name: str
    dag: str
    stages: list[str]
    repo: Path
    url: str
    ctl: FaultCtl
    dags_folder: str
    tmp: Path
    _store: Store | None = None
    _token: str | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.url)
        return self._store

    def topic(self, stage: str) -> str:
        return f"it{self.uid}{short(stage)}.rc.events"

    def db(self, stage: str) -> str:
        return f"it{self.uid}{short(stage)}_rc"

    def dbs(self) -> list[str]:
        return sorted({self.db(s) for s in self.stages})

    def release(self, version: str, gates: list[dict[str, Any]], retention: str = RETENTION) -> str:
        doc = {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": self.name},
            "spec": {
                "version": version,
                "topics": [{"name": "rc.events", "partitions": 2, "replicationFactor": 1,
                            "config": {"retention.ms": retention}}],
                "tables": [{"name": "rc.counts",
                            "columns": [{"name": "k", "type": "string"}, {"name": "n", "type": "bigint"}],
                            "partitionedBy": [{"name": "dt", "type": "string"}]}],
                "views": [{"name": "rc.counts_v", "table": "rc.counts"}],
                "dags": [{"id": self.dag, "path": "dags/rc_daily.py"}],
                "rollout": {"stages": self.stages, "gates": gates, "rollback": {"automatic": True}},
            },
        }
        return str(yaml.safe_dump(doc, sort_keys=False))

    def commit(self, version: str, gates: list[dict[str, Any]], retention: str = RETENTION,
               files: dict[str, str] | None = None, webhook: bool = True) -> str:
        sha = commit_files(self.repo, {"releases/rc.yaml": self.release(version, gates, retention),
                                       **(files or {})}, version)
        if webhook and self.ctl.alive():
            self.ctl.webhook()
        return sha

    def status(self) -> dict[str, Any] | None:
        """The release's status from the state store; None when the store cannot be read."""
        try:
            return self.store.get_status(self.name) or {}
        except Exception:
            return None

    def stage(self, stage: str) -> dict[str, Any]:
        return dict(((self.status() or {}).get("stages") or {}).get(stage) or {})

    def ready(self, status: dict[str, Any] | None = None) -> dict[str, Any]:
        st = self.status() if status is None else status
        return next((c for c in (st or {}).get("conditions") or [] if c.get("type") == "Ready"), {})

    def wait_stage(self, stage: str, version: str, phase: str, timeout: float) -> float:
        def ok() -> bool:
            st = self.stage(stage)
            if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack", "RollbackFailed",
                                                                    "Invalid") and st.get("phase") != phase:
                raise AssertionError(f"{stage} {version} ended {st}\n{self.tail()}")
            return bool(st.get("version") == version and st.get("phase") == phase)

        return wait(ok, timeout, f"{stage} {phase} on {version}", self)

    def wait_all(self, version: str, timeout: float) -> float:
        t0 = time.time()
        for s in self.stages:
            self.wait_stage(s, version, "Succeeded", max(1.0, timeout - (time.time() - t0)))
        return time.time() - t0

    @property
    def token(self) -> str:
        """An API token of principal ``fx`` (created in the state store on first use)."""
        if self._token is None:
            r = subprocess.run([sys.executable, "-m", "controller.cli.main", "token", "create", "--user", "fx",
                                "--state", self.url], cwd=self.tmp, env={**os.environ, **self.ctl.env},
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            self._token = r.stdout.strip()
        return self._token

    def get(self, path: str, limit: int = 100_000) -> tuple[int, str]:
        """(HTTP status, body) of GET ``path`` on the controller's API with the token; -1 when it
        does not answer."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.ctl.port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return int(r.status), r.read().decode()[:limit]
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()[:limit]
        except OSError as e:
            return -1, str(e)

    def tail(self, n: int = 4000) -> str:
        return self.ctl.log.read_text(errors="replace")[-n:] if self.ctl.log.exists() else ""


def wait(cond: Callable[[], bool], timeout: float, what: str, w: World | None = None) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{w.tail() if w else ''}")


# --- status watcher ---------------------------------------------------------------------------------


@dataclass
class Watch:
    """Polls the release's status in a thread; keeps every (time, status) it read."""

    world: World
    every: float = 0.25
    seen: list[tuple[float, dict[str, Any] | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append((time.time(), self.world.status()))
            self._stop.wait(self.every)

    def partial_promotions(self, version: str) -> list[str]:
        """Every look at which a stage had ``version`` before its predecessor had Succeeded on it."""
        stages = self.world.stages
        succeeded: set[str] = set()
        bad: list[str] = []
        for t, st in self.seen:
            if not st:
                continue
            by = st.get("stages") or {}
            for s in stages:
                if (by.get(s) or {}).get("version") == version and (by.get(s) or {}).get("phase") == "Succeeded":
                    succeeded.add(s)
            for prev, s in itertools.pairwise(stages):
                if (by.get(s) or {}).get("version") == version and prev not in succeeded:
                    bad.append(f"t={t:.1f}: {s} has {version} ({by.get(s)}) before {prev} Succeeded on it "
                               f"({by.get(prev)})")
        return bad

    def succeeded_between(self, version: str, t0: float, t1: float, before: set[str]) -> list[str]:
        """Stages seen Succeeded on ``version`` between t0 and t1 that were not so in ``before``."""
        out = []
        for t, st in self.seen:
            if t0 <= t <= t1 and st:
                for s, ss in (st.get("stages") or {}).items():
                    if ss.get("version") == version and ss.get("phase") == "Succeeded" and s not in before:
                        out.append(f"t={t - t0:.1f}s into the outage: {s} {ss}")
        return out


# --- the local stack ----------------------------------------------------------------------------------


def devstack(cmd: str, name: str, timeout: float = 420) -> float:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "controller.devstack", cmd, "--only", name], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    took = time.time() - t0
    print(f"devstack {cmd} --only {name}: rc {r.returncode} in {took:.1f}s")
    if r.returncode != 0:
        raise AssertionError(f"devstack {cmd} --only {name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took


@contextmanager
def outage(name: str) -> Iterator[dict[str, float]]:
    """``name`` is down inside the block; it is started again on the way out, whatever happened."""
    times: dict[str, float] = {}
    try:
        times["down_s"] = devstack("down", name)
        times["down_at"] = time.time()
        yield times
    finally:
        times["up_started"] = time.time()
        times["up_s"] = devstack("up", name)
        if not healthy(name):  # once more (the Thrift Server can come up unable to report errors)
            print(f"{name} is not healthy after up; restarting it once more")
            devstack("down", name)
            times["up_s"] += devstack("up", name)
        times["up_at"] = time.time()


def healthy(name: str) -> bool:
    r = subprocess.run([sys.executable, "-m", "controller.devstack", "status", "--only", name], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    return r.returncode == 0


def pg_url(stack: dict[str, Any], schema: str) -> tuple[str, str]:
    """(SQLAlchemy URL with search_path=schema, libpq DSN) for the stack's PostgreSQL."""
    return pg_urls(stack, schema)


# --- what was applied ---------------------------------------------------------------------------------


def install_journal_log(state: Path) -> None:
    """Record every state the journal's rows take (the journal keeps one row per plan digest and
    action, overwritten on each attempt): SQLite triggers append to ``journal_log``."""
    Store(f"sqlite:///{state}").close()  # the controller's tables
    con = sqlite3.connect(state)
    try:
        con.executescript(
            """
            CREATE TABLE IF NOT EXISTS journal_log (
                n INTEGER PRIMARY KEY AUTOINCREMENT, plan_digest TEXT, action_id TEXT, state TEXT,
                run_id TEXT, stage TEXT, ts REAL DEFAULT (julianday('now')));
            CREATE TRIGGER IF NOT EXISTS journal_log_insert AFTER INSERT ON journal BEGIN
                INSERT INTO journal_log (plan_digest, action_id, state, run_id, stage)
                VALUES (NEW.plan_digest, NEW.action_id, NEW.state, NEW.run_id, NEW.stage); END;
            CREATE TRIGGER IF NOT EXISTS journal_log_update AFTER UPDATE ON journal BEGIN
                INSERT INTO journal_log (plan_digest, action_id, state, run_id, stage)
                VALUES (NEW.plan_digest, NEW.action_id, NEW.state, NEW.run_id, NEW.stage); END;
            """
        )
        con.commit()
    finally:
        con.close()


def journal_log(state: Path) -> list[tuple[str, str, str, str, str]]:
    con = sqlite3.connect(state)
    try:
        return list(con.execute(
            "SELECT plan_digest, action_id, state, run_id, stage FROM journal_log ORDER BY n"))
    finally:
        con.close()


def double_applies(rows: list[dict[str, Any]], log: list[tuple[str, str, str, str, str]]) -> list[str]:
    """Actions applied more than once. The executor (controller/engine/executor.py) journals
    ``started`` before it touches a backend and then ``done`` (applied), ``waiting`` (applied, not
    visible yet: the next pass re-checks and finishes it), ``skipped`` (live state had converged:
    not applied), ``failed``. So per (plan digest, action id): at most one ``done``, and after it
    nothing but a ``skipped`` re-check."""
    bad: list[str] = []
    done = [(r["plan_digest"], r["action_id"]) for r in rows if r["state"] == "done"]
    if len(done) != len(set(done)):
        bad.append(f"journal rows: more than one 'done' row for {sorted(k for k in done if done.count(k) > 1)}")
    history: dict[tuple[str, str], list[str]] = {}
    for digest, action, state, _run, _stage in log:
        history.setdefault((digest, action), []).append(state)
    for (digest, action), states in history.items():
        if states.count("done") > 1:
            bad.append(f"{action} (plan {digest[:12]}) applied {states.count('done')} times: {states}")
        elif "done" in states:
            after = states[states.index("done") + 1:]
            if any(s not in ("started", "skipped") for s in after):
                bad.append(f"{action} (plan {digest[:12]}) ran again after 'done': {states}")
    return bad


def topic_shape(topic: str) -> tuple[int, str | None] | None:
    """(partitions, retention.ms) of a live topic, None when it does not exist."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    md = admin.list_topics(timeout=10)
    if topic not in md.topics:
        return None
    cfg = topic_config(BOOTSTRAP, topic) or {}
    return len(md.topics[topic].partitions), cfg.get("retention.ms")


def hive_relations(db: str) -> list[str]:
    from pyhive import hive

    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    try:
        cur = con.cursor()
        cur.execute(f"SHOW TABLES IN `{db}`")
        return sorted(str(r[1] if len(r) > 2 else r[0]) for r in cur.fetchall())
    finally:
        con.close()


def dag_files(folder: str, dag: str) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(f"{dag}__"))


def audit_verify(url: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", "audit", "verify", "--state", url],
                          cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def metrics_text(port: int, state: Path | None = None, token: str | None = None) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def as_json(x: Any) -> str:
    return json.dumps(x, default=str)[:2000]
