"""Orchestration: up (install, start in dependency order, wait for health), down, status."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.devstack import components as C
from controller.devstack import install, kube, procs
from controller.devstack.layout import (
    HOST,
    Layout,
    StackError,
    find_java_home,
    find_postgres_bin,
    find_spark_home,
    load_recorded_ports,
    port,
    python_executable,
    record_ports,
    spark_version,
)

ORDER = [cls.name for cls in C.COMPONENTS]


@dataclass
class Node:
    name: str
    deps: tuple[str, ...]
    run: Callable[[], str]
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    detail: str = ""
    seconds: float = 0.0


class Console:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, msg: str) -> None:
        with self.lock:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)


def _expand(only: list[str] | None) -> list[str]:
    if not only:
        return list(ORDER)
    names: list[str] = []
    for raw in only:
        n = raw.strip()
        if not n:
            continue
        if n in C.ALIASES:
            names.extend(C.ALIASES[n])
        elif n in ORDER:
            names.append(n)
        else:
            raise StackError(f"unknown component {n!r}; known: {', '.join(ORDER + sorted(C.ALIASES))}")
    return names


def _with_deps(names: list[str], comps: dict[str, C.Component]) -> list[str]:
    out: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(comps[n].deps)
    return [n for n in ORDER if n in out]


def command_change(comp: C.Component, rec: procs.ProcRecord) -> str | None:
    """How the command ``comp`` would start with now differs from the one its running process
    ``rec`` was started with (None when equal, or when the command cannot be built)."""
    try:
        argv = [str(a) for a in comp.command()[0]]
    except Exception:  # a command that cannot be built now is no reason to restart
        return None
    if argv == rec.argv:
        return None
    for i, (old, new) in enumerate(zip(rec.argv, argv, strict=False)):
        if old != new:
            return f"argument {i}: {_clip(old)} -> {_clip(new)}"
    return f"{len(rec.argv)} -> {len(argv)} arguments"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


class Stack:
    def __init__(self, root: Path, say: Callable[[str], None] | None = None) -> None:
        self.layout = Layout(root)
        self.say = say or Console()
        load_recorded_ports(self.layout.stack)

    # context ---------------------------------------------------------------------------
    def context(self, *, require: bool = True) -> C.Context:
        java_home = find_java_home()
        spark_home = find_spark_home()
        if require:
            if java_home is None:
                raise StackError("no Java 17 found (apt-get install openjdk-17-jdk-headless, or set "
                                 "PIPECTL_JAVA_HOME)")
            if spark_home is None:
                raise StackError(f"pyspark is not importable by {python_executable()}: run `make install`")
        return C.Context(
            layout=self.layout,
            java_home=java_home or Path("/usr"),
            spark_home=spark_home or Path("/nonexistent"),
            spark_version=spark_version(spark_home) if spark_home else "",
            python=python_executable(),
            pg_bin=find_postgres_bin(),
        )

    def components(self, ctx: C.Context) -> dict[str, C.Component]:
        return {cls.name: cls(ctx) for cls in C.COMPONENTS}

    # up ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One `up`/`down` at a time per .stack (two make runs must not start servers twice)."""
        self.layout.run.mkdir(parents=True, exist_ok=True)
        with open(self.layout.run / "devstack.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say("another `devstack up/down` is running on this .stack; waiting for it")
                fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def up(self, only: list[str] | None = None) -> int:
        self.layout.ensure_dirs()
        with self._exclusive():
            record_ports(self.layout.stack)
            return self._up(only)

    def install(self, only: list[str] | None = None) -> int:
        """What ``up`` installs (downloads, Maven jars, Airflow's venv, the kube build), nothing
        started. CI runs it in the background during lint and unit tests; ``up`` waits for it on
        the stack's lock and then finds everything installed."""
        self.layout.ensure_dirs()
        with self._exclusive():
            return self._up(only, start=False)

    def _up(self, only: list[str] | None, start: bool = True) -> int:
        t0 = time.monotonic()
        wall0 = time.time()
        lay = self.layout
        install.ensure_system_packages(lay, say=self.say)
        ctx = self.context()
        comps = self.components(ctx)
        selected = _with_deps(_expand(only), comps)
        self.say(f"stack under {lay.stack}; components: {', '.join(selected)}")

        def task_jars() -> str:
            v = install.choose_spark_kafka_version(lay, ctx.java_home, ctx.spark_version)
            ctx.spark_kafka_version = v
            g = install.resolve_jar_groups(lay, ctx.java_home, install.stack_jar_groups(v))
            ctx.metastore_jars, ctx.kafka_jars = [*g["metastore"], *g["metastore-listener"]], g["kafka"]
            ctx.metastore_server_jars = g["metastore-server"]
            ctx.spark_jars, ctx.spark_classpath = g["spark"], g["iceberg"]
            C.write_spark_conf(ctx)
            return (f"metastore {len(ctx.metastore_jars)}, kafka {len(ctx.kafka_jars)}, spark "
                    f"{len(ctx.spark_jars)} (connector {ctx.spark_kafka_version}) jars")

        def task_presto() -> str:
            ctx.presto_home = install.install_presto(lay, ctx.java_home)
            return str(ctx.presto_home)

        def task_airflow() -> str:
            ctx.airflow_venv = install.install_airflow_venv(lay, ctx.python)
            C.airflow_init(ctx)
            return str(ctx.airflow_venv)

        installs: dict[str, tuple[tuple[str, ...], Callable[[], str]]] = {
            # Maven runs one at a time (a lock): all jar groups in one run first, the tarball last.
            "jars": ((), task_jars),
            "presto:install": (("jars",), task_presto),
            "airflow:install": ((), task_airflow),
            "kube:install": ((), lambda: kube.install_kube(lay, say=self.say)),
        }
        needed = {"jars"}  # the Spark conf dir is for every Spark process, always written
        for n in selected:
            needed.update(comps[n].installs)
        nodes: dict[str, Node] = {}
        for task, (deps, fn) in installs.items():
            if task in needed:
                nodes[task] = Node(task, tuple(d for d in deps if d in needed), fn)
        for n in selected if start else ():
            comp = comps[n]
            nodes[n] = Node(n, tuple(comp.deps) + tuple(comp.installs), self._component_runner(comp))

        threads = [threading.Thread(target=self._run_node, args=(node, nodes), name=node.name, daemon=True)
                   for node in nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        procs.reap()

        failed = [node for node in nodes.values() if not node.ok]
        if not start:
            self.say(f"installed in {time.monotonic() - t0:.1f}s" + (" (with failures)" if failed else ""))
            return 1 if failed else 0
        self.write_stack_json(ctx, comps)
        total = time.monotonic() - t0
        if failed:
            print("\nstack-up FAILED:", file=sys.stderr)
            for node in failed:
                first = node.detail.splitlines()[0] if node.detail else "failed"
                print(f"  {node.name}: {first}", file=sys.stderr)
            for node in failed:
                if node.detail.startswith("not started"):
                    continue
                rec = procs.read_record(comps[node.name].pidfile) if node.name in comps else None
                if rec is not None and rec.started_at >= wall0:  # started by this run: show its log
                    log = comps[node.name].log
                    print(f"\n--- {node.name}: {node.detail}\n--- last lines of {log}:\n"
                          f"{procs.tail(log, 40)}", file=sys.stderr)
                else:
                    print(f"\n--- {node.name}: {node.detail}", file=sys.stderr)
            return 1
        self.say(f"all healthy in {total:.1f}s; wrote {lay.stack_json}")
        return 0

    def _run_node(self, node: Node, nodes: dict[str, Node]) -> None:
        t0 = time.monotonic()
        try:
            for d in node.deps:
                nodes[d].done.wait()
                if not nodes[d].ok:
                    node.detail = f"not started: {d} failed"
                    return
            node.detail = node.run()
            node.ok = True
        except StackError as e:
            node.detail = str(e)
        except Exception as e:  # report, never hang the other threads
            node.detail = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        finally:
            node.seconds = time.monotonic() - t0
            state = "ok" if node.ok else "FAILED"
            first = node.detail.splitlines()[0] if node.detail else ""
            self.say(f"{node.name}: {state} ({node.seconds:.1f}s) {first}")
            node.done.set()

    def _component_runner(self, comp: C.Component) -> Callable[[], str]:
        def run() -> str:
            rec = procs.live_record(comp.pidfile)
            changed = command_change(comp, rec) if rec is not None else None
            if rec is not None and changed:
                # A server started by an older checkout (other jars, flags) would otherwise stay.
                self.say(f"{comp.name}: running (pid {rec.pid}) with another command ({changed}); "
                         "restarting it")
                comp.stop(rec)
            elif rec is not None:
                try:
                    detail = comp.check()
                    comp.after_healthy()
                    return f"already running (pid {rec.pid}): {detail}"
                except Exception as e:
                    self.say(f"{comp.name}: running (pid {rec.pid}) but not healthy yet "
                             f"({_short(e)}); waiting")
                try:
                    detail = self._wait_healthy(comp, rec, comp.timeout)
                    comp.after_healthy()
                    return f"running (pid {rec.pid}): {detail}"
                except StackError as e:
                    self.say(f"{comp.name}: {e}; restarting it")
                    comp.stop(rec)
            if comp.has_port and not procs.wait_port_free(HOST, comp.port, 15 if rec else 0):
                raise StackError(f"port {comp.port} on {HOST} is in use by a process this stack did not "
                                 f"start (pid file {comp.pidfile}); stop it or set "
                                 f"PIPECTL_{(comp.port_name or comp.name).upper()}_PORT")
            comp.prepare()
            rec = comp.start()
            self.say(f"{comp.name}: started pid {rec.pid}, waiting for health (log {comp.log})")
            detail = self._wait_healthy(comp, rec, comp.timeout)
            comp.after_healthy()
            return f"healthy (pid {rec.pid}): {detail}"

        return run

    def _wait_healthy(self, comp: C.Component, rec: procs.ProcRecord, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            procs.reap()
            if not rec.alive():
                raise StackError(f"{comp.name} exited during start-up (last check: {last})")
            try:
                return comp.check()
            except StackError:
                raise  # not a "not yet": a check that can tell it will never pass
            except Exception as e:
                last = _short(e)
            if time.monotonic() > deadline:
                raise StackError(f"{comp.name} not healthy after {timeout:.0f}s: {last}")
            time.sleep(1.0)

    # stack.json ----------------------------------------------------------------------------
    def write_stack_json(self, ctx: C.Context, comps: dict[str, C.Component]) -> dict[str, Any]:
        lay = self.layout
        entries: dict[str, Any] = {}
        for name in ORDER:
            comp = comps[name]
            rec = procs.live_record(comp.pidfile)
            entries[name] = {
                "host": HOST, "port": comp.port if comp.has_port else None, "pid": rec.pid if rec else None,
                "state": "running" if rec else "stopped", "version": comp.version(),
                "log": str(comp.log), **comp.info(),
            }
        data = {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "repo_root": str(lay.root),
            "stack_dir": str(lay.stack),
            "host": HOST,
            "components": entries,
            "kafka_bootstrap": f"{HOST}:{port('kafka')}",
            "metastore_uri": f"thrift://{HOST}:{port('metastore')}",
            "thrift_host": HOST, "thrift_port": port("thrift"), "thrift_auth": "NOSASL",
            "presto_url": f"http://{HOST}:{port('presto')}",
            "presto_host": HOST, "presto_port": port("presto"), "presto_catalog": "hive",
            "presto_iceberg_catalog": "iceberg", "spark_iceberg_catalog": "iceberg",
            "spark_conf_dir": str(lay.spark_conf),
            "spark_home": str(ctx.spark_home),
            "spark_version": ctx.spark_version,
            "spark_kafka_connector_version": ctx.spark_kafka_version
            or _read(lay.jars / "spark.version").split(" ")[-1],
            "spark_jars": [str(p) for p in sorted((lay.jars / "spark").glob("*.jar"))],
            "warehouse_dir": str(lay.warehouse),
            "warehouse_uri": lay.warehouse_uri,
            "airflow_url": f"http://{HOST}:{port('airflow')}",
            "prometheus_url": f"http://{HOST}:{port('prometheus')}",
            "airflow_user": ctx.airflow_user,
            "airflow_password_env": "PIPECTL_AIRFLOW_PASSWORD",
            "airflow_dags_folder": str(lay.airflow_dags),
            "airflow_home": str(lay.airflow_home),
            "airflow_venv": str(lay.airflow_venv),
            "java_home": str(ctx.java_home),
            "python": ctx.python,
        }
        tmp = lay.stack_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(lay.stack_json)
        return data

    # down ----------------------------------------------------------------------------------
    def down(self, only: list[str] | None = None) -> int:
        with self._exclusive():
            return self._down(only)

    def _down(self, only: list[str] | None) -> int:
        ctx = self.context(require=False)
        comps = self.components(ctx)
        names = _expand(only)
        rc = 0
        for name in reversed(ORDER):
            if name not in names:
                continue
            comp = comps[name]
            rec = procs.read_record(comp.pidfile)
            if rec is None:
                continue
            if rec.alive() or rec.group_pids():
                t0 = time.monotonic()
                try:
                    how = comp.stop(rec)
                except Exception as e:
                    how = f"stop failed: {e}; killing"
                    procs.stop(rec, timeout=5)
                left = rec.group_pids()
                if rec.alive() or left:
                    rc = 1
                    self.say(f"{name}: pid {rec.pid} still alive after stop ({left})")
                    continue
                self.say(f"{name}: {how} (pid {rec.pid}, {time.monotonic() - t0:.1f}s)")
            else:
                self.say(f"{name}: was not running (stale pid file removed)")
            comp.pidfile.unlink(missing_ok=True)
        if self.layout.stack_json.exists() and ctx.spark_home.exists():
            self.write_stack_json(ctx, comps)
        return rc

    # status --------------------------------------------------------------------------------
    def status_rows(self, only: list[str] | None = None) -> list[dict[str, Any]]:
        ctx = self.context(require=False)
        comps = self.components(ctx)
        names = _expand(only)
        rows = []
        for name in ORDER:
            if name not in names:
                continue
            comp = comps[name]
            rec = procs.live_record(comp.pidfile)
            row: dict[str, Any] = {"component": name, "port": comp.port if comp.has_port else None,
                                   "pid": None,
                                   "version": comp.version(), "rss_mb": 0.0, "pss_mb": 0.0}
            if rec is None:
                stale = comp.pidfile.exists()
                row.update(state="dead" if stale else "stopped", detail="")
            else:
                row.update(pid=rec.pid, rss_mb=rec.rss_bytes() / 2**20, pss_mb=rec.pss_bytes() / 2**20,
                           uptime_s=time.time() - rec.started_at)
                try:
                    row.update(state="healthy", detail=comp.check())
                except Exception as e:
                    row.update(state="unhealthy", detail=_short(e))
            rows.append(row)
        return rows

    def status(self, only: list[str] | None = None, as_json: bool = False) -> int:
        rows = self.status_rows(only)
        bad = [r for r in rows if r["state"] != "healthy"]
        if as_json:
            print(json.dumps(rows, indent=2))
            return 1 if bad else 0
        hdr = f"{'component':<18} {'state':<10} {'port':>5} {'pid':>8} {'version':<9} {'RSS MB':>7} " \
              f"{'PSS MB':>7}  detail"
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            print(f"{r['component']:<18} {r['state']:<10} {r['port'] or '-':>5} {r['pid'] or '-':>8} "
                  f"{r['version']:<9} {r['rss_mb']:>7.0f} {r['pss_mb']:>7.0f}  {r.get('detail', '')[:70]}")
        print("-" * len(hdr))
        print(f"{'total':<18} {len(rows) - len(bad)}/{len(rows)} healthy {'':>16} "
              f"{sum(r['rss_mb'] for r in rows):>7.0f} {sum(r['pss_mb'] for r in rows):>7.0f}")
        if bad:
            print(f"\nnot healthy: {', '.join(r['component'] for r in bad)} (logs in {self.layout.logs})",
                  file=sys.stderr)
        return 1 if bad else 0


def _short(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}" if not isinstance(e, StackError) else str(e)
    return s.splitlines()[0][:200] if s else type(e).__name__


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def env_exports(root: Path) -> str:
    """Shell lines that point a Spark process at the stack (for `eval "$(... env)"`)."""
    import shlex

    from controller.devstack.info import spark_env

    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in spark_env(root).items())


__all__ = ["Stack", "env_exports", "os"]
