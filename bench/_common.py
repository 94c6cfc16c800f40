"""Shared helpers for the benchmarks in ``bench/`` (not a benchmark itself: ``make bench`` runs
only ``bench/bench_*.py``).

Everything here talks to the local stack on 127.0.0.1 only (``.stack/stack.json``): Kafka :9092,
the Spark Thrift Server :10000, Presto :8080 and Airflow :8089. The stack is never started,
stopped or restarted from here; a benchmark that finds it unhealthy exits with code 2.

Every benchmark works under a unique prefix (``new_uid``) and removes what it created with
:func:`cleanup` (topics under the prefix, Hive databases under the prefix, the DAG files and the
Airflow records of the DAG ids it deployed).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
KAFKA = "127.0.0.1:9092"
HIVE_HOST, HIVE_PORT = "127.0.0.1", 10000
METASTORE_URI = "thrift://127.0.0.1:9083"
AIRFLOW_URL = "http://127.0.0.1:8089"
TOKEN = "bench-" + uuid.uuid4().hex[:16]
# The local stack's Airflow password (as the Makefile exports it): pipectl has no default.
os.environ.setdefault("PIPECTL_AIRFLOW_PASSWORD", "admin")

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


# --- output ---------------------------------------------------------------------------------------


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        padded = [c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True)]
        lines.append("  ".join(padded))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _numeric(s: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[0-9.]+(x|%|s| ms| MiB)?", s))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def emit_json(name: str, figures: dict[str, Any], started: dict[str, Any]) -> None:
    end = machine()
    print(
        json.dumps(
            {
                "bench": name,
                "machine": {**started, "loadavg_end": end["loadavg"], "finished": end["date"]},
                "figures": figures,
            },
            sort_keys=True,
            default=str,
        ),
        flush=True,
    )


# --- the stack ------------------------------------------------------------------------------------


def stack_info() -> dict[str, Any]:
    """``.stack/stack.json`` after a quick health check; exits 2 when the stack is not usable."""
    from controller.devstack import probes
    from controller.devstack.info import load_stack_info

    try:
        info = load_stack_info(ROOT)
    except FileNotFoundError as e:
        print(f"local stack not found: {e} (make stack-up)", file=sys.stderr)
        raise SystemExit(2) from e
    host, c = info["host"], info["components"]
    checks: list[tuple[str, Callable[[], object]]] = [
        ("kafka", lambda: probes.kafka_check(host, c["kafka"]["port"], timeout=5)),
        ("thrift", lambda: probes.hs2_check(host, c["thrift"]["port"], timeout=30)),
        ("presto", lambda: probes.presto_check(host, c["presto"]["port"], timeout=30)),
        ("airflow", lambda: probes.airflow_scheduler_check(host, c["airflow-webserver"]["port"])),
    ]
    problems = []
    for name, check in checks:
        try:
            check()
        except Exception as e:
            problems.append(f"{name}: {type(e).__name__}: {e}")
    if problems:
        print("local stack unhealthy (make stack-status): " + "; ".join(problems), file=sys.stderr)
        raise SystemExit(2)
    return info


def new_uid(tag: str) -> str:
    """A short lower-case unique prefix, e.g. ``bcp3f9a2c``."""
    return f"b{tag}{uuid.uuid4().hex[:6]}"


def env_yaml(uid: str, dags_folder: str, stage: str = "dev") -> str:
    """The bench's environment; ``BENCH_HIVE_METASTORE=1``: Hive live state from the stack's
    metastore (``hive.metastoreUri``) instead of the Thrift Server's SQL."""
    metastore = f', metastoreUri: "{METASTORE_URI}"' if os.environ.get("BENCH_HIVE_METASTORE") == "1" else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: Environment
metadata:
  name: {stage}
spec:
  kafka: {{bootstrapServers: "{KAFKA}", topicPrefix: "{uid}."}}
  hive: {{host: {HIVE_HOST}, port: {HIVE_PORT}, databasePrefix: "{uid}_"{metastore}}}
  presto: {{host: 127.0.0.1, port: 8080, catalog: hive}}
  airflow: {{url: "{AIRFLOW_URL}", username: admin, passwordFrom: "env:PIPECTL_AIRFLOW_PASSWORD",
            dagsFolder: "{dags_folder}"}}
  spark: {{master: "local[1]"}}
  promotion: automatic
"""


# --- git ------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def git_init(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    git_commit(repo, "initial")


def git_commit(repo: Path, msg: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=bench@pipectl", "-c", "user.name=bench", "commit", "-qm", msg)
    return git(repo, "rev-parse", "HEAD").strip()


# --- the controller as a process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControllerProcess:
    """``pipectl controller run`` on a repo and a SQLite state, API on a free loopback port."""

    def __init__(
        self, repo: Path, state: Path, log: Path, interval: str = "1h", extra_args: Sequence[str] = ()
    ):
        self.repo, self.state, self.log, self.interval = repo, state, log, interval
        self.extra_args = list(extra_args)  # e.g. ["--bake", "10m"]
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.read_token: str | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> None:
        if not self.read_token:  # reads (/metrics) need a principal's API token
            self.read_token = subprocess.run(
                [PY, "-m", "controller.cli.main", "token", "create", "--user", "bench", "--state",
                 f"sqlite:///{self.state}"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout.strip()
        env = {**os.environ, "PIPECTL_WEBHOOK_SECRET": TOKEN}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    PY, "-m", "controller.cli.main", "controller", "run",
                    "--repo", str(self.repo),
                    "--state", f"sqlite:///{self.state}",
                    "--listen", f"127.0.0.1:{self.port}",
                    "--interval", self.interval,
                    *self.extra_args,
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("controller exited:\n" + self.log.read_text()[-3000:])
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("controller did not come up:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def webhook(self) -> float:
        """POST /hooks/git with the webhook secret; returns the wall-clock time it was sent."""
        t = time.time()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/git",
            data=b'{"ref":"refs/heads/main"}',
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 202:
                raise RuntimeError(f"webhook answered {r.status}")
        return t

    def metrics(self) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/metrics", headers={"Authorization": f"Bearer {self.read_token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body: bytes = r.read()
        return body.decode()


def reconcile_histogram(text: str) -> dict[str, tuple[float, float]]:
    """``pipectl_reconcile_duration_seconds`` per release: (sum, count) over all results."""
    out: dict[str, list[float]] = {}
    pat = re.compile(r'^pipectl_reconcile_duration_seconds_(sum|count)\{([^}]*)\} ([0-9.eE+-]+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        acc = out.setdefault(labels.get("release", ""), [0.0, 0.0])
        acc[0 if m.group(1) == "sum" else 1] += float(m.group(3))
    return {k: (v[0], v[1]) for k, v in out.items()}


def rss_mib(pid: int) -> float:
    """VmRSS of a process from /proc/<pid>/status, in MiB (NaN when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def sqlite_rows(db: Path, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, tuple(args)).fetchall()
    finally:
        con.close()


def parse_ts(v: Any) -> float:
    """A timestamp column of the state store (SQLite text, UTC) → epoch seconds."""
    if isinstance(v, datetime):
        dt = v
    else:
        dt = datetime.fromisoformat(str(v).replace(" ", "T"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


# --- real clients (to check the backends and to clean up) ----------------------------------------


def kafka_admin() -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": KAFKA})


def topic_config(admin: Any, topic: str, key: str) -> str | None:
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        cfg = admin.describe_configs([res], request_timeout=10)[res].result(timeout=10)
    except Exception:
        return None
    entry = cfg.get(key)
    return None if entry is None else str(entry.value)


def airflow_password() -> str:
    return os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin")


def cleanup(uid: str, dag_ids: Sequence[str], dags_folder: str) -> list[str]:
    """Remove what a benchmark made under ``uid``; returns what could not be removed."""
    problems: list[str] = []
    try:
        admin = kafka_admin()
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{uid}.")]
        if topics:
            for f in admin.delete_topics(topics, operation_timeout=60).values():
                f.result(timeout=120)
        say(f"cleanup: deleted {len(topics)} topic(s) {uid}.*")
    except Exception as e:
        problems.append(f"kafka: {e}")
    try:
        from pyhive import hive

        con = hive.connect(HIVE_HOST, HIVE_PORT, auth="NOSASL")
        cur = con.cursor()
        cur.execute(f"SHOW DATABASES LIKE '{uid}_*'")
        dbs = [str(r[0]) for r in cur.fetchall() if str(r[0]).startswith(f"{uid}_")]
        for db in dbs:
            if not re.fullmatch(r"[a-z0-9_]+", db):
                continue
            cur.execute(f"DROP DATABASE IF EXISTS `{db}` CASCADE")
        con.close()
        say(f"cleanup: dropped {len(dbs)} Hive database(s) {uid}_* still there" if dbs
            else f"cleanup: no Hive database {uid}_* left")
    except Exception as e:
        problems.append(f"hive: {e}")
    folder = Path(dags_folder)
    removed = 0
    for dag in dag_ids:
        for f in (folder / f"{dag}.py", folder / f"{dag}.pipectl.json"):
            if f.exists():
                f.unlink()
                removed += 1
    import base64

    auth = base64.b64encode(f"admin:{airflow_password()}".encode()).decode()
    deleted = 0
    for dag in dag_ids:
        req = urllib.request.Request(
            f"{AIRFLOW_URL}/api/v1/dags/{dag}", method="DELETE", headers={"Authorization": f"Basic {auth}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30):
                deleted += 1
        except urllib.error.HTTPError as e:
            if e.code != 404:
                problems.append(f"airflow delete {dag}: HTTP {e.code}")
        except OSError as e:
            problems.append(f"airflow delete {dag}: {e}")
    if dag_ids:
        say(f"cleanup: removed {removed} DAG file(s), deleted {deleted} DAG record(s) from Airflow")
    return problems


def quiet_logs() -> None:
    """In-process controller: only warnings and errors from structlog and logging."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger().setLevel(logging.WARNING)


def install_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt so ``finally`` blocks clean up."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
