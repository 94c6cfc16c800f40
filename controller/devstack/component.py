"""What a stack component is: the ``Context`` every component gets from the orchestrator and the
``Component`` base class (identity, then the lifecycle: prepare, command, start, check, after_healthy,
stop). The stack's components themselves are in ``controller.devstack.components``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.devstack import procs
from controller.devstack.layout import Layout, port


@dataclass
class Context:
    """What every component needs to know; filled in by the orchestrator before starting."""

    layout: Layout
    java_home: Path
    spark_home: Path
    spark_version: str
    python: str
    pg_bin: Path | None
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    # set by install tasks
    kafka_jars: list[Path] = field(default_factory=list)
    metastore_jars: list[Path] = field(default_factory=list)
    # ahead of Spark's jars on the metastore's classpath: its hive-metastore 2.3.10 (HIVE-26882)
    metastore_server_jars: list[Path] = field(default_factory=list)
    spark_jars: list[Path] = field(default_factory=list)
    # on the driver's own classpath (spark.driver.extraClassPath), not spark.jars: the Thrift
    # Server runs statements on threads whose class loader does not see spark.jars, so a catalog
    # plugin from there is "Cannot find catalog plugin class"
    spark_classpath: list[Path] = field(default_factory=list)
    spark_kafka_version: str = ""
    presto_home: Path | None = None
    airflow_venv: Path | None = None

    @property
    def java(self) -> str:
        return str(self.java_home / "bin" / "java")

    @property
    def airflow_user(self) -> str:
        return "admin"

    @property
    def airflow_password(self) -> str:
        return os.environ.get("PIPECTL_AIRFLOW_PASSWORD", "admin")

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_", "AIRFLOW"))}
        env["JAVA_HOME"] = str(self.java_home)
        env["PATH"] = f"{self.java_home / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["LC_ALL"] = env.get("LC_ALL", "C.UTF-8")
        return env

    def spark_env(self) -> dict[str, str]:
        env = self.base_env()
        env.update(SPARK_HOME=str(self.spark_home), SPARK_CONF_DIR=str(self.layout.spark_conf),
                   PYSPARK_PYTHON=self.python, PYSPARK_DRIVER_PYTHON=self.python)
        return env


class Component:
    name = ""
    port_name = ""
    deps: tuple[str, ...] = ()
    installs: tuple[str, ...] = ()  # install tasks that must finish first
    timeout = 120.0
    user: str | None = None
    has_port = True  # False: no listening port of its own (the scheduler)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.layout = ctx.layout

    # identity ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return port(self.port_name or self.name)

    @property
    def log(self) -> Path:
        return self.layout.log(self.name)

    @property
    def pidfile(self) -> Path:
        return self.layout.pidfile(self.name)

    def version(self) -> str:
        return ""

    def info(self) -> dict[str, Any]:
        return {}

    # lifecycle --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write configs and initialise data dirs (idempotent); runs before every start."""

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def check(self) -> str:
        """Raise when not healthy; return a short detail when healthy."""
        raise NotImplementedError

    def after_healthy(self) -> None:
        """One-time setup that needs the running server (idempotent)."""

    def start(self) -> procs.ProcRecord:
        argv, env, cwd = self.command()
        return procs.spawn(self.name, argv, log=self.log, pidfile=self.pidfile, env=env, cwd=cwd,
                           user=self.user if self.ctx.is_root else None)

    def stop(self, rec: procs.ProcRecord) -> str:
        return procs.stop(rec, timeout=30)
