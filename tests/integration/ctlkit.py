"""Helpers for integration tests that drive a real ``pipectl controller run`` process against the
local stack: a throwaway git repo, a release without Spark jobs, a controller subprocess, waiting
and cleanup with real clients."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from confluent_kafka.admin import AdminClient, ConfigResource

TOKEN = "it-token-123"

ROOT = Path(__file__).resolve().parents[2]

DAG_SOURCE = textwrap.dedent(
    """\
    import json
    from datetime import datetime
    from pathlib import Path

    from airflow import DAG
    from airflow.operators.empty import EmptyOperator

    _FILE = Path(__file__)
    _META = _FILE.with_suffix(".pipectl.json")
    PIPECTL = json.loads(_META.read_text()) if _META.exists() else {"tags": []}

    with DAG(dag_id=_FILE.stem, tags=PIPECTL["tags"], schedule=None, start_date=datetime(2026, 1, 1),
             catchup=False):
        EmptyOperator(task_id="noop")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def dag_id(name: str) -> str:
    """The logical DAG id of release ``name``: its own, because every test deploys into the one
    DAG folder of the stack's Airflow, and a DAG id held by another test's release is refused
    (NotOwned) by this one's controller."""
    return name.replace("-", "_") + "_daily"


def release_yaml(name: str, version: str, retention: str, extra_topic: bool, with_dag: bool) -> str:
    topics = f"""\
  topics:
    - name: rc.events
      partitions: 2
      replicationFactor: 1
      config: {{retention.ms: "{retention}"}}
"""
    if extra_topic:
        topics += """\
    - name: rc.events_b
      partitions: 1
      replicationFactor: 1
"""
    dags = f"  dags:\n    - id: {dag_id(name)}\n      path: dags/rc_daily.py\n" if with_dag else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: {version}
{topics}  tables:
    - name: rc.counts
      columns: [{{name: k, type: string}}, {{name: n, type: bigint}}]
      partitionedBy: [{{name: dt, type: string}}]
  views:
    - name: rc.counts_v
      table: rc.counts
{dags}  rollout:
    stages: [dev]
"""


class Ctl:
    def __init__(
        self,
        repo: Path,
        state: Path,
        port: int,
        log: Path,
        bake: str | None = None,
        interval: str = "5s",
        extra_args: list[str] | None = None,
    ):
        self.repo, self.state, self.port, self.log = repo, state, port, log
        # bake None: the controller's default (60s). interval 5s, not less: every refresh drops the
        # live snapshot, so each pass then reads Hive, Presto and Kafka again, and at 2s those reads
        # took about half a core of this 2-core stack from the tests' Spark jobs (docs/stack.md, "CPU").
        self.bake, self.interval = bake, interval
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PIPECTL_WEBHOOK_SECRET": TOKEN}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller.cli.main",
                    "controller",
                    "run",
                    "--repo",
                    str(self.repo),
                    "--state",
                    f"sqlite:///{self.state}",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--interval",
                    self.interval,
                    *(["--bake", self.bake] if self.bake else []),
                    *self.extra_args,
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("controller did not come up:\n" + self.log.read_text()[-3000:])

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def webhook(self) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/git",
            data=b'{"ref":"refs/heads/main"}',
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202


def status(state: Path, name: str) -> dict[str, Any]:
    con = sqlite3.connect(state)
    try:
        row = con.execute("SELECT status FROM releases WHERE name = ?", (name,)).fetchone()
    finally:
        con.close()
    return json.loads(row[0]) if row else {}


def wait_for(cond: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.3)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def topic_config(bootstrap: str, topic: str) -> dict[str, str] | None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    if topic not in md.topics:
        return None
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(timeout=10)
    return {k: v.value for k, v in cfg.items()}


def cleanup(stack: dict[str, Any], uid: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"it{uid}.")]
    if topics:
        for f in admin.delete_topics(topics).values():
            f.result(timeout=30)
    from pyhive import hive

    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    cur = con.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `it{uid}_rc` CASCADE")
    con.close()
    folder = Path(stack["airflow_dags_folder"])
    for f in folder.glob(f"{dag_id(name)}__*"):
        f.unlink()


def commit(repo: Path, text: str, msg: str) -> None:
    (repo / "releases" / "rc.yaml").write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", msg)




def make_repo(root: Path, uid: str, name: str, dags_folder: str, with_dag: bool = False) -> Path:
    repo = root / "repo"
    (repo / "releases").mkdir(parents=True)
    (repo / "environments").mkdir()
    (repo / "dags").mkdir()
    (repo / "dags" / "rc_daily.py").write_text(DAG_SOURCE)
    (repo / "environments" / "dev.yaml").write_text(stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", dags_folder))
    (repo / "releases" / "rc.yaml").write_text(release_yaml(name, "1.0.0", "3600000", False, with_dag))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "1.0.0")
    return repo


def pipectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


# --- multi-stage releases, ledger and cleanup (rollback and blue/green tests) ----------------------


def stage_env_yaml(
    name: str,
    topic_prefix: str,
    db_prefix: str,
    dags_folder: str,
    promotion: str = "automatic",
    spark_master: str = "local[1]",
    metastore_uri: str | None = None,
) -> str:
    """An Environment with endpoints of its own (dev, staging, prod) on the local stack. With
    ``metastore_uri`` (the stack's ``metastore_uri``) each pass reads Hive from the metastore's
    Thrift API instead of SHOW TABLE EXTENDED through the Thrift Server, which shares the CPU with
    the tests' Spark jobs (a median 1.4 s per database in a loaded test_second_pipeline run)."""
    metastore = f', metastoreUri: "{metastore_uri}"' if metastore_uri else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: Environment
metadata:
  name: {name}
spec:
  kafka: {{bootstrapServers: "127.0.0.1:9092", topicPrefix: "{topic_prefix}"}}
  hive: {{host: 127.0.0.1, port: 10000, databasePrefix: "{db_prefix}"{metastore}}}
  presto: {{host: 127.0.0.1, port: 8080, catalog: hive}}
  airflow: {{url: "http://127.0.0.1:8089", username: admin, passwordFrom: "env:PIPECTL_AIRFLOW_PASSWORD",
            dagsFolder: "{dags_folder}"}}
  spark: {{master: "{spark_master}"}}
  promotion: {promotion}
"""


def canary_env_yaml(name: str, of: str, promotion: str = "automatic") -> str:
    """A canary stage: no endpoints of its own, it runs beside ``of``'s installation."""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: Environment
metadata:
  name: {name}
spec:
  canaryOf: {of}
  promotion: {promotion}
"""


def commit_files(repo: Path, files: dict[str, str], msg: str) -> str:
    """Write ``files`` (path relative to the repo → text) and commit them; returns the commit id."""
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", msg)
    return git(repo, "rev-parse", "HEAD").strip()


def init_repo(root: Path, files: dict[str, str], msg: str) -> Path:
    """A new git repo under ``root/repo`` holding ``files``, committed on ``main``."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    commit_files(repo, files, msg)
    return repo


def stage_status(state: Path, name: str, stage: str) -> dict[str, Any]:
    return dict(status(state, name).get("stages", {}).get(stage) or {})


def stage_is(state: Path, name: str, stage: str, version: str, phase: str) -> bool:
    st = stage_status(state, name, stage)
    return bool(st.get("version") == version and st.get("phase") == phase)


def pipectl_json(*args: str) -> Any:
    """``pipectl ARGS -o json`` parsed; fails the test with stderr when the command fails."""
    r = pipectl(*args, "-o", "json")
    assert r.returncode == 0, f"pipectl {' '.join(args)} failed: {r.stderr}"
    return json.loads(r.stdout)


def dag_version(airflow_url: str, dag_id: str, password: str | None = None) -> str | None:
    """The ``version:`` tag Airflow's REST API reports for an active DAG (None when absent)."""
    import airflow_client.client as client
    from airflow_client.client.api.dag_api import DAGApi
    from airflow_client.client.exceptions import NotFoundException

    conf = client.Configuration(
        host=f"{airflow_url.rstrip('/')}/api/v1",
        username="admin",
        password=password or os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin"),
    )
    with client.ApiClient(conf) as api:
        try:
            dag = DAGApi(api).get_dag(dag_id)
        except NotFoundException:
            return None
    if not dag.is_active:
        return None
    tags = [str(t.name) for t in (dag.tags or [])]
    return next((t.removeprefix("version:") for t in tags if t.startswith("version:")), None)


def stop_spark_jobs(state_dir: Path, repo: Path, env: dict[str, str]) -> list[str]:
    """Stop (then kill) every streaming job a controller registered under ``state_dir/spark``;
    the names of those that were running."""
    from controller.adapters.spark import LocalRunner

    if not (state_dir / "spark" / "jobs").exists():
        return []
    runner = LocalRunner(state_dir / "spark", repo, env)
    alive = [name for name, st in runner.list().items() if st.alive]

    def stop(name: str) -> None:
        try:
            runner.stop(name, timeout=30)
        except Exception:
            runner.kill(name)

    # side by side: one at a time, a test with four jobs waited up to 2 min for their graceful stops
    with ThreadPoolExecutor(max(1, len(alive))) as pool:
        list(pool.map(stop, alive))
    return alive


def drop_everything(uid: str, databases: list[str], dags_folder: str, dag_glob: str | None) -> None:
    """Delete the test's topics (``it<uid>…``), drop its databases CASCADE and its DAG files."""
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"it{uid}")]
    if topics:
        for f in admin.delete_topics(topics).values():
            try:
                f.result(timeout=30)
            except Exception:
                pass
    from pyhive import hive

    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    try:
        cur = con.cursor()
        for db in databases:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}` CASCADE")
    finally:
        con.close()
    if dag_glob:
        for f in Path(dags_folder).glob(dag_glob):
            f.unlink()


def token_for(state: Path, user: str) -> str:
    """A new API token of principal ``user`` in the controller's state store (printed once)."""
    r = pipectl("token", "create", "--user", user, "--state", f"sqlite:///{state}")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def pg_urls(stack: dict[str, Any], schema: str) -> tuple[str, str]:
    """(SQLAlchemy URL with search_path=schema, libpq DSN) for the stack's PostgreSQL, with the
    metastore's login (from its hive-site.xml)."""
    conf = (Path(stack["stack_dir"]) / "metastore" / "conf" / "hive-site.xml").read_text()
    user = re.search(r"ConnectionUserName</name><value>([^<]+)<", conf)
    password = re.search(r"ConnectionPassword</name><value>([^<]+)<", conf)
    assert user and password
    port = int(stack["components"]["postgres"]["port"])
    dsn = f"host=127.0.0.1 port={port} dbname=metastore user={user.group(1)} password={password.group(1)}"
    url = (f"postgresql+psycopg://{quote(user.group(1))}:{quote(password.group(1))}@127.0.0.1:{port}/metastore"
           f"?options=-csearch_path%3D{schema}")
    return url, dsn
