"""Where things live: repo root, ``.stack/`` directories, ports, versions, Java, pyspark."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"

# Default ports; each can be overridden with PIPECTL_<NAME>_PORT (e.g. PIPECTL_KAFKA_PORT=19092).
DEFAULT_PORTS: dict[str, int] = {
    "postgres": 5433,
    "metastore": 9083,
    "kafka": 9092,
    "kafka_controller": 9093,
    "thrift": 10000,
    "presto": 8080,
    "airflow": 8089,
    "etcd": 2379,
    "etcd_peer": 2380,
    "kube_apiserver": 6443,
    "spark_master": 7077,
    "spark_master_rest": 6066,
    "spark_master_ui": 8180,  # not 8080: Presto's
    "spark_worker_ui": 8181,
    "prometheus": 9090,
}

KAFKA_VERSION = os.environ.get("PIPECTL_KAFKA_VERSION", "3.9.1")
PRESTO_VERSION = os.environ.get("PIPECTL_PRESTO_VERSION", "0.287")
AIRFLOW_VERSION = "2.11.2"
SLF4J_BINDING = "org.slf4j:slf4j-reload4j:1.7.36"
POSTGRES_JDBC = "org.postgresql:postgresql:42.7.4"
# Spark patch versions tried for the Kafka connector when the exact pyspark version is not
# served by the Maven repository (newest first); the connector is binary compatible within 3.5.
SPARK_KAFKA_FALLBACKS = ("3.5.7", "3.5.6", "3.5.5", "3.5.4", "3.5.3", "3.5.2", "3.5.1", "3.5.0")

CONF_DIR = Path(__file__).resolve().parent / "conf"
CONSTRAINTS = Path(__file__).resolve().parent / f"airflow-{AIRFLOW_VERSION}-constraints.txt"


class StackError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


def find_repo_root(start: Path | None = None) -> Path:
    """The directory holding pyproject.toml, searched upwards from ``start`` (default: cwd)."""
    env = os.environ.get("PIPECTL_REPO_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / "pyproject.toml").is_file() and (cand / "controller").is_dir():
            return cand
    # Fall back to the checkout this package lives in.
    return Path(__file__).resolve().parents[2]


_recorded_ports: dict[str, int] = {}


def port(name: str) -> int:
    """PIPECTL_<NAME>_PORT, else the port the last `up` of this .stack used, else the default."""
    env = os.environ.get(f"PIPECTL_{name.upper()}_PORT")
    if env:
        return int(env)
    return _recorded_ports.get(name, DEFAULT_PORTS[name])


def load_recorded_ports(stack_dir: Path) -> None:
    """Make later `status`/`up`/`down` calls use the ports `up` ran with (.stack/ports.json),
    so an override given once does not have to be repeated."""
    try:
        data = json.loads((stack_dir / "ports.json").read_text())
    except (OSError, ValueError):
        return
    _recorded_ports.update({k: int(v) for k, v in data.items() if k in DEFAULT_PORTS})


def record_ports(stack_dir: Path) -> None:
    (stack_dir / "ports.json").write_text(json.dumps({n: port(n) for n in DEFAULT_PORTS}, indent=1) + "\n")


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"java\.specification\.version = (\d+)", out)
    return int(m.group(1)) if m else None


def find_java_home() -> Path | None:
    """A Java 17 home: PIPECTL_JAVA_HOME, JAVA_HOME, the Debian path, or `java` on PATH."""
    cands: list[Path] = []
    for var in ("PIPECTL_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            cands.append(Path(os.environ[var]))
    cands += sorted(Path("/usr/lib/jvm").glob("java-17-openjdk*")) if Path("/usr/lib/jvm").is_dir() else []
    which = shutil.which("java")
    if which:
        cands.append(Path(os.path.realpath(which)).parent.parent)
    for home in cands:
        java = home / "bin" / "java"
        if java.is_file() and _java_major(java) == 17:
            return home
    return None


def find_spark_home() -> Path | None:
    """pyspark's package directory in the calling interpreter (it ships bin/ and jars/)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        return None
    home = Path(spec.origin).parent
    return home if (home / "jars").is_dir() else None


def spark_version(spark_home: Path) -> str:
    text = (spark_home / "version.py").read_text()
    m = re.search(r"__version__[^=]*=\s*[\"']([^\"']+)", text)
    if not m:
        raise StackError(f"cannot read the pyspark version from {spark_home / 'version.py'}")
    return m.group(1)


def find_postgres_bin() -> Path | None:
    env = os.environ.get("PIPECTL_PG_BIN")
    if env:
        return Path(env)
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        vers = sorted((p for p in base.iterdir() if (p / "bin" / "postgres").is_file()),
                      key=lambda p: int(p.name) if p.name.isdigit() else 0)
        # Prefer 15 (what the stack was verified with), else the newest.
        for p in vers:
            if p.name == "15":
                return p / "bin"
        if vers:
            return vers[-1] / "bin"
    which = shutil.which("postgres")
    return Path(os.path.realpath(which)).parent if which else None


@dataclass
class Layout:
    root: Path
    stack: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stack = self.root / ".stack"

    # directories -----------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.stack / "logs"

    @property
    def run(self) -> Path:
        return self.stack / "run"

    @property
    def jars(self) -> Path:
        return self.stack / "jars"

    @property
    def maven(self) -> Path:
        return self.stack / "maven"

    @property
    def warehouse(self) -> Path:
        return self.stack / "warehouse"

    @property
    def warehouse_uri(self) -> str:
        return self.warehouse.as_uri()

    @property
    def spark_conf(self) -> Path:
        return self.stack / "spark-conf"

    @property
    def airflow_home(self) -> Path:
        return self.stack / "airflow"

    @property
    def airflow_venv(self) -> Path:
        return self.stack / "airflow-venv"

    @property
    def airflow_dags(self) -> Path:
        return self.airflow_home / "dags"

    @property
    def stack_json(self) -> Path:
        return self.stack / "stack.json"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def ensure_dirs(self) -> None:
        for d in (self.stack, self.logs, self.run, self.jars, self.maven, self.warehouse):
            d.mkdir(parents=True, exist_ok=True)


def python_executable() -> str:
    return sys.executable
