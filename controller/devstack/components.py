"""The stack's components: how each one is configured, started, checked and stopped (the base class
and the context they share are in ``controller.devstack.component``)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import uuid
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.devstack import install, probes, procs
from controller.devstack.component import Component, Context
from controller.devstack.install import render, write_if_changed
from controller.devstack.kube import Etcd, KubeApiserver
from controller.devstack.layout import (
    AIRFLOW_VERSION,
    CONF_DIR,
    HOST,
    KAFKA_VERSION,
    PRESTO_VERSION,
    StackError,
    port,
)
from controller.devstack.metastore_txn import txn_schema_sql
from controller.devstack.prometheus import Prometheus
from controller.devstack.spark_cluster import SparkMaster, SparkWorker

ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
# The JIT of every Spark JVM the stack starts (its Thrift Server, and through spark-defaults.conf
# every local job and cluster driver and executor): C1 only, half the CPU of the default tiered
# C2 on this 2-core stack. Presto's presto-jvm.config.tmpl sets the same flag (docs/stack.md, "CPU").
JIT_OPTIONS = "-XX:TieredStopAtLevel=1"

# --- PostgreSQL ------------------------------------------------------------------------------------

class Postgres(Component):
    name = "postgres"
    timeout = 60.0
    user = "postgres"

    @property
    def base(self) -> Path:
        return self.layout.stack / "postgres"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        return self.base / "run"

    @property
    def bin(self) -> Path:
        if self.ctx.pg_bin is None:
            raise StackError("PostgreSQL binaries not found (apt-get install postgresql)")
        return self.ctx.pg_bin

    def version(self) -> str:
        try:
            out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True,
                                 text=True, timeout=10, check=False).stdout
        except (OSError, StackError):
            return ""
        m = re.search(r"(\d+(\.\d+)?)", out)
        return m.group(1) if m else out.strip()

    def password(self) -> str:
        f = self.base / "hive.password"
        if not f.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            write_if_changed(f, secrets.token_hex(16) + "\n", mode=0o600)
        return f.read_text().strip()

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.ctx.is_root:
            import pwd

            pw = pwd.getpwnam("postgres")
            for p in (path, *path.rglob("*")):
                if p.stat().st_uid != pw.pw_uid:
                    os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        path.chmod(0o700)

    def prepare(self) -> None:
        self.password()
        self._own(self.sockdir)
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            self._own(self.data)
            procs.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                       "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"],
                      log=self.layout.log("postgres-init"), cwd=self.base,
                      user="postgres" if self.ctx.is_root else None, timeout=300)
        else:
            self._own(self.data)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.sockdir}",
                "-c", "shared_buffers=32MB", "-c", "max_connections=60", "-c", "synchronous_commit=off",
                "-c", "logging_collector=off", "-c", "log_min_messages=warning"]
        return argv, self.ctx.base_env(), self.data

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = procs.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", str(self.sockdir), "-p", str(self.port), "-U", "postgres", "-d", db,
                         "-c", sql], timeout=30)
        return out.stdout.strip()

    def check(self) -> str:
        try:
            if self.psql("SELECT 1") != "1":
                raise probes.ProbeError("SELECT 1 failed")
        except StackError as e:
            raise probes.ProbeError(str(e).splitlines()[-1]) from None
        return "SELECT 1 ok"

    def after_healthy(self) -> None:
        pw = self.password()
        assert re.fullmatch(r"[0-9a-f]+", pw)
        self.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hive') THEN "
                  f"CREATE ROLE hive LOGIN PASSWORD '{pw}'; ELSE ALTER ROLE hive PASSWORD '{pw}'; "
                  "END IF; END $$;")
        if self.psql("SELECT 1 FROM pg_database WHERE datname = 'metastore'") != "1":
            self.psql("CREATE DATABASE metastore OWNER hive")

    def stop(self, rec: procs.ProcRecord) -> str:
        try:
            procs.run([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w",
                       "-t", "30"], user="postgres" if self.ctx.is_root else None, timeout=60)
        except StackError:
            return procs.stop(rec, timeout=30)
        procs.wait_gone(rec, 10)
        return "stopped" if not rec.alive() else procs.stop(rec, timeout=10)


# --- Hive metastore --------------------------------------------------------------------------------

def _metastore_model_classes(spark_home: Path) -> list[str]:
    jar = next(iter(sorted((spark_home / "jars").glob("hive-metastore-*.jar"))), None)
    if jar is None:
        raise StackError(f"no hive-metastore jar under {spark_home / 'jars'}")
    with zipfile.ZipFile(jar) as z:
        jdo = z.read("package.jdo").decode()
    pkg = re.search(r'<package name="([^"]+)"', jdo)
    classes = re.findall(r'<class name="([^"]+)"', jdo)
    if not pkg or not classes:
        raise StackError(f"cannot read the model classes from package.jdo in {jar}")
    return [f"{pkg.group(1)}.{c}" for c in classes]


class Metastore(Component):
    name = "metastore"
    deps = ("postgres",)
    installs = ("jars",)
    timeout = 180.0

    @property
    def confdir(self) -> Path:
        return self.layout.stack / "metastore" / "conf"

    def version(self) -> str:
        shipped = sorted((self.ctx.spark_home / "jars").glob("hive-metastore-*.jar"))
        jars = [*self.ctx.metastore_server_jars, *shipped]
        jar = next((j for j in jars if j.name.startswith("hive-metastore-")), None)
        return jar.stem.removeprefix("hive-metastore-") if jar else ""

    def prepare(self) -> None:
        pg = Postgres(self.ctx)
        write_if_changed(self.confdir / "hive-site.xml", render(
            "metastore-hive-site.xml.tmpl", host=HOST, pg_port=pg.port, pg_password=pg.password(),
            warehouse_uri=self.layout.warehouse_uri,
            auto_start_classes=",".join(_metastore_model_classes(self.ctx.spark_home))), mode=0o600)
        write_if_changed(self.confdir / "hive-log4j2.properties",
                         (CONF_DIR / "metastore-log4j2.properties").read_text())
        self.layout.warehouse.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        jdbc = [str(p) for p in self.ctx.metastore_jars]
        server = [str(p) for p in self.ctx.metastore_server_jars]  # first: its classes win over Spark's
        cp = os.pathsep.join([str(self.confdir), *server, str(self.ctx.spark_home / "jars" / "*"), *jdbc])
        argv = [self.ctx.java, "-Xmx384m", "-Xms64m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
                f"-Dhive.log.dir={self.layout.logs}",
                f"-Dlog4j2.configurationFile=file:{self.confdir / 'hive-log4j2.properties'}",
                "-cp", cp, "org.apache.hadoop.hive.metastore.HiveMetaStore", "-p", str(self.port)]
        work = self.layout.stack / "metastore"
        return argv, self.ctx.base_env(), work

    def check(self) -> str:
        return probes.metastore_check(HOST, self.port)

    def after_healthy(self) -> None:
        # the lock API's tables, which DataNucleus does not create (also on a stack already up)
        Postgres(self.ctx).psql(txn_schema_sql(), db="metastore")

    def info(self) -> dict[str, Any]:
        return {"uri": f"thrift://{HOST}:{self.port}"}


# --- Kafka -----------------------------------------------------------------------------------------

def _kafka_uuid() -> str:
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not s.startswith("-"):
            return s


class Kafka(Component):
    name = "kafka"
    installs = ("jars",)
    timeout = 120.0

    @property
    def base(self) -> Path:
        return self.layout.stack / "kafka"

    def version(self) -> str:
        for j in self.ctx.kafka_jars or sorted((self.layout.jars / "kafka").glob("kafka_2.13-*.jar")):
            if j.name.startswith("kafka_2.13-"):
                return j.stem.removeprefix("kafka_2.13-")
        return KAFKA_VERSION

    def _java_base(self) -> list[str]:
        return [self.ctx.java, f"-Dlog4j.configuration=file:{self.base / 'log4j.properties'}",
                f"-Dkafka.logs.dir={self.base / 'logs'}", "-cp",
                str(self.layout.jars / "kafka" / "*")]

    def prepare(self) -> None:
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.base / "logs").mkdir(exist_ok=True)
        props = self.base / "server.properties"
        write_if_changed(props, render("kafka-server.properties.tmpl", host=HOST, port=self.port,
                                       controller_port=port("kafka_controller"), data_dir=data))
        write_if_changed(self.base / "log4j.properties", (CONF_DIR / "kafka-log4j.properties").read_text())
        if not (data / "meta.properties").exists():
            cid_file = self.base / "cluster.id"
            if not cid_file.exists():
                cid_file.write_text(_kafka_uuid() + "\n")
            procs.run([*self._java_base(), "kafka.tools.StorageTool", "format", "-t",
                       cid_file.read_text().strip(), "-c", str(props), "--ignore-formatted"],
                      log=self.log, env=self.ctx.base_env(), timeout=120)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        j = self._java_base()
        argv = [j[0], "-Xmx512m", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", *j[1:], "kafka.Kafka", str(self.base / "server.properties")]
        return argv, self.ctx.base_env(), self.base

    def check(self) -> str:
        return probes.kafka_check(HOST, self.port)

    def info(self) -> dict[str, Any]:
        return {"bootstrap_servers": f"{HOST}:{self.port}"}


# --- Spark Thrift Server ---------------------------------------------------------------------------

def write_spark_conf(ctx: Context) -> None:
    conf = ctx.layout.spark_conf
    values = dict(host=HOST, metastore_port=port("metastore"), warehouse_uri=ctx.layout.warehouse_uri,
                  conf_dir=conf, jars=",".join(str(p) for p in ctx.spark_jars),
                  classpath=os.pathsep.join(str(p) for p in ctx.spark_classpath), jit_options=JIT_OPTIONS)
    write_if_changed(conf / "spark-defaults.conf", render("spark-defaults.conf.tmpl", **values))
    write_if_changed(conf / "hive-site.xml", render("spark-hive-site.xml.tmpl", **values))
    write_if_changed(conf / "log4j2.properties", (CONF_DIR / "spark-log4j2.properties").read_text())


class Thrift(Component):
    name = "thrift"
    deps = ("metastore",)
    installs = ("jars",)
    timeout = 240.0

    def version(self) -> str:
        return self.ctx.spark_version

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        work = self.layout.stack / "thrift"
        work.mkdir(parents=True, exist_ok=True)
        argv = [str(self.ctx.spark_home / "bin" / "spark-submit"),
                "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
                "--name", "pipectl-thrift-server", "--driver-memory", "1g",
                "--conf", "spark.sql.hive.filesourcePartitionFileCacheSize=0",
                "--conf", f"spark.driver.extraJavaOptions=-Djava.io.tmpdir={work} {JIT_OPTIONS}",
                # Iceberg's SQL extensions (CALL procedures) for the table maintenance pipectl runs
                # here (controller/engine/maintenance.py); other statements parse as before.
                "--conf", f"spark.sql.extensions={ICEBERG_EXTENSIONS}",
                "spark-internal",
                "--hiveconf", f"hive.server2.thrift.bind.host={HOST}",
                "--hiveconf", f"hive.server2.thrift.port={self.port}",
                "--hiveconf", "hive.server2.authentication=NOSASL",
                "--hiveconf", "hive.server2.transport.mode=binary",
                "--hiveconf", "hive.server2.enable.doAs=false"]
        return argv, self.ctx.spark_env(), work

    def check(self) -> str:
        return probes.hs2_check(HOST, self.port)

    def info(self) -> dict[str, Any]:
        return {"auth": "NOSASL", "url": f"hive://{HOST}:{self.port}/default"}


# --- Presto ----------------------------------------------------------------------------------------

class Presto(Component):
    name = "presto"
    deps = ("metastore",)
    installs = ("presto:install",)
    timeout = 300.0
    heap = "768M"

    @property
    def base(self) -> Path:
        return self.layout.stack / "presto"

    def version(self) -> str:
        return PRESTO_VERSION

    def prepare(self) -> None:
        assert self.ctx.presto_home is not None
        etc = self.base / "etc"
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        node_id_file = self.base / "node.id"
        if not node_id_file.exists():
            node_id_file.write_text(str(uuid.uuid4()) + "\n")
        write_if_changed(etc / "config.properties", render(
            "presto-config.properties.tmpl", host=HOST, port=self.port, heap=self.heap,
            plugin_dir=self.ctx.presto_home / "plugin", catalog_dir=etc / "catalog"))
        write_if_changed(etc / "node.properties", render(
            "presto-node.properties.tmpl", host=HOST, node_id=node_id_file.read_text().strip(),
            data_dir=data))
        write_if_changed(etc / "jvm.config", render("presto-jvm.config.tmpl", heap=self.heap))
        write_if_changed(etc / "log.properties", (CONF_DIR / "presto-log.properties").read_text())
        write_if_changed(etc / "catalog" / "hive.properties", render(
            "presto-hive.properties.tmpl", host=HOST, metastore_port=port("metastore")))
        # Apache Iceberg tables (manifest `format: iceberg`) registered in the same metastore
        write_if_changed(etc / "catalog" / "iceberg.properties", render(
            "presto-iceberg.properties.tmpl", host=HOST, metastore_port=port("metastore")))
        # pipectl's operational event stream on Kafka (controller run --events-kafka …/pipectl.events)
        # as the table kafka.ops.pipectl_events
        write_if_changed(etc / "kafka" / "pipectl_events.json",
                         (CONF_DIR / "presto-kafka-pipectl_events.json").read_text())
        write_if_changed(etc / "catalog" / "kafka.properties", render(
            "presto-kafka.properties.tmpl", host=HOST, kafka_port=port("kafka"),
            description_dir=etc / "kafka"))

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        assert self.ctx.presto_home is not None
        etc = self.base / "etc"
        jvm = [ln.strip() for ln in (etc / "jvm.config").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
        props = {}
        for ln in (etc / "node.properties").read_text().splitlines():
            if "=" in ln and not ln.startswith("#"):
                k, v = ln.split("=", 1)
                props[k.strip()] = v.strip()
        props["config"] = str(etc / "config.properties")
        props["log.levels-file"] = str(etc / "log.properties")
        argv = [self.ctx.java, "-cp", str(self.ctx.presto_home / "lib" / "*"), *jvm,
                *(f"-D{k}={v}" for k, v in props.items()), "com.facebook.presto.server.PrestoServer"]
        return argv, self.ctx.base_env(), self.base / "data"

    def check(self) -> str:
        return probes.presto_check(HOST, self.port)

    def info(self) -> dict[str, Any]:
        return {"url": f"http://{HOST}:{self.port}", "catalog": "hive",
                "iceberg_catalog": "iceberg", "events_table": "kafka.ops.pipectl_events"}


# --- Airflow ---------------------------------------------------------------------------------------

def airflow_env(ctx: Context) -> dict[str, str]:
    lay = ctx.layout
    assert ctx.airflow_venv is not None
    secret = lay.airflow_home / "webserver_secret_key"
    if not secret.exists():
        lay.airflow_home.mkdir(parents=True, exist_ok=True)
        write_if_changed(secret, secrets.token_hex(24) + "\n", mode=0o600)
    env = ctx.spark_env()
    env["PATH"] = f"{ctx.airflow_venv / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env.update({
        "AIRFLOW_HOME": str(lay.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(lay.airflow_dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_FETCH_INTERVAL": "1",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{lay.airflow_home / 'airflow.db'}",
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session",
        "AIRFLOW__WEBSERVER__WORKERS": "1",
        "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": HOST,
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(port("airflow")),
        "AIRFLOW__WEBSERVER__BASE_URL": f"http://{HOST}:{port('airflow')}",
        "AIRFLOW__WEBSERVER__SECRET_KEY": secret.read_text().strip(),
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "AIRFLOW__WEBSERVER__WARN_DEPLOYMENT_EXPOSURE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PIPECTL_STACK_JSON": str(lay.stack_json),
    })
    return env


def airflow_init(ctx: Context) -> None:
    """`airflow db migrate` and the admin user, once per AIRFLOW_HOME (marker file)."""
    lay = ctx.layout
    lay.airflow_dags.mkdir(parents=True, exist_ok=True)
    marker = lay.airflow_home / f".initialized-{AIRFLOW_VERSION}"
    if marker.exists() and (lay.airflow_home / "airflow.db").exists():
        return
    assert ctx.airflow_venv is not None
    airflow = str(ctx.airflow_venv / "bin" / "airflow")
    env = airflow_env(ctx)
    log = lay.log("airflow-init")
    procs.run([airflow, "db", "migrate"], log=log, env=env, cwd=lay.airflow_home, timeout=600)
    procs.run([airflow, "users", "create", "--username", ctx.airflow_user, "--password",
               ctx.airflow_password, "--firstname", "Pipectl", "--lastname", "Admin", "--role", "Admin",
               "--email", "admin@pipectl.invalid"], log=log, env=env, cwd=lay.airflow_home, timeout=300)
    marker.write_text("ok\n")


def airflow_recreate_admin(ctx: Context) -> None:
    """Give the admin user the current PIPECTL_AIRFLOW_PASSWORD. `airflow users reset-password`
    crashes in 2.11.2 (FAB's reset_user_sessions with the SQLite session backend), so the user is
    deleted and created again."""
    assert ctx.airflow_venv is not None
    airflow = str(ctx.airflow_venv / "bin" / "airflow")
    env, log, cwd = airflow_env(ctx), ctx.layout.log("airflow-init"), ctx.layout.airflow_home
    procs.run([airflow, "users", "delete", "--username", ctx.airflow_user], log=log, env=env, cwd=cwd,
              timeout=300, check=False)
    procs.run([airflow, "users", "create", "--username", ctx.airflow_user, "--password",
               ctx.airflow_password, "--firstname", "Pipectl", "--lastname", "Admin", "--role", "Admin",
               "--email", "admin@pipectl.invalid"], log=log, env=env, cwd=cwd, timeout=300)


class AirflowWebserver(Component):
    name = "airflow-webserver"
    port_name = "airflow"
    installs = ("airflow:install",)
    timeout = 240.0
    _password_reset = False

    def version(self) -> str:
        return AIRFLOW_VERSION

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        assert self.ctx.airflow_venv is not None
        argv = [str(self.ctx.airflow_venv / "bin" / "airflow"), "webserver", "--port", str(self.port),
                "--hostname", HOST, "--workers", "1"]
        return argv, airflow_env(self.ctx), self.layout.airflow_home

    def check(self) -> str:
        try:
            return probes.airflow_webserver_check(HOST, self.port, self.ctx.airflow_user,
                                                  self.ctx.airflow_password)
        except probes.ProbeError as e:
            if "refused" not in str(e):
                raise
            # PIPECTL_AIRFLOW_PASSWORD changed since the user was created: during `up` (which
            # knows the venv) recreate the user once; otherwise, or if that did not help, give up.
            if self.ctx.airflow_venv is None or self._password_reset:
                raise StackError(f"Airflow refuses user {self.ctx.airflow_user!r} with the password "
                                 f"from PIPECTL_AIRFLOW_PASSWORD ({e})") from None
            self._password_reset = True
            airflow_recreate_admin(self.ctx)
            raise

    def info(self) -> dict[str, Any]:
        return {"url": f"http://{HOST}:{self.port}", "user": self.ctx.airflow_user,
                "password_env": "PIPECTL_AIRFLOW_PASSWORD"}


class AirflowScheduler(Component):
    name = "airflow-scheduler"
    port_name = "airflow"
    has_port = False
    installs = ("airflow:install",)
    timeout = 240.0

    def version(self) -> str:
        return AIRFLOW_VERSION

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        assert self.ctx.airflow_venv is not None
        argv = [str(self.ctx.airflow_venv / "bin" / "airflow"), "scheduler", "--skip-serve-logs"]
        return argv, airflow_env(self.ctx), self.layout.airflow_home

    def check(self) -> str:
        # /health is served by the webserver and reports the scheduler's heartbeat; right after a
        # restart the previous scheduler's heartbeat can still look fresh, so it must be ours.
        detail = probes.airflow_scheduler_check(HOST, self.port)
        rec = procs.read_record(self.pidfile)
        beat = detail.removeprefix("heartbeat ")
        try:
            ts = datetime.fromisoformat(beat).timestamp()
        except ValueError:
            return detail
        if rec is not None and ts < rec.started_at:
            raise probes.ProbeError(f"latest scheduler heartbeat {beat} predates this scheduler")
        return detail

    def info(self) -> dict[str, Any]:
        return {"dags_folder": str(self.layout.airflow_dags)}


COMPONENTS: tuple[type[Component], ...] = (
    Postgres, Metastore, Kafka, Thrift, Presto, AirflowWebserver, AirflowScheduler, Etcd, KubeApiserver,
    SparkMaster, SparkWorker, Prometheus,
)
ALIASES = {"airflow": ("airflow-webserver", "airflow-scheduler"), "hive": ("thrift",),
           "spark": ("thrift",), "hms": ("metastore",), "kube": ("etcd", "kube-apiserver"),
           "spark-cluster": ("spark-master", "spark-worker"),
           # what the demo needs: everything but the Kubernetes API server and the Spark cluster
           "core": ("postgres", "metastore", "kafka", "thrift", "presto", "airflow-webserver",
                    "airflow-scheduler")}

__all__ = ["ALIASES", "COMPONENTS", "Component", "Context", "install", "write_spark_conf"]
