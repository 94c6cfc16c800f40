"""100 generated releases: no-op pass time, backend calls per pass, controller RSS (issue 5b, 5c).

What it does, against the local stack (127.0.0.1 only):

1. generates one git repo with ``RELEASES`` (default 100) releases under a unique prefix, each with
   its own names and 10 resources: 1 Hive database, 5 Kafka topics (1 partition each), 2 tables,
   2 serving views; every ``BENCH_DAG_EVERY``-th release (default 20th: 5 DAGs in all) also has an
   Airflow DAG. Not 100 DAGs: the local stack's Airflow re-parses every DAG file every 5 s with a
   single parsing process, and each new DAG waits for that scheduler to pick it up, so 100 DAGs
   would measure the stack's scheduler more than pipectl;
2. converges them all with the controller's own loop, in-process (``build_runtime`` +
   ``Controller.run`` in a thread: its order and parallelism, one worker, actions of a wave in
   parallel), printing progress; bounded by ``BENCH_CONVERGE_BUDGET`` seconds;
3. runs two full no-op passes in-process (``Controller.run_once`` over every release) and counts
   the backend round trips per backend and per operation (``StageBackends.call_detail()``: the
   one environment's adapters are shared by all releases), checks every plan was a no-op and no
   run was recorded, and times each release's pass. The second pass is the measured one: the pass
   the controller repeats, with the fast path knowing every converged release and the snapshot
   knowing each release's scopes to prefetch; the first is reported too (right after the
   converge, or cold on a kept run);
4. starts a real ``pipectl controller run`` process on the same repo and state: its first pass
   after start is a full no-op pass over the 100 converged releases (cold: fresh connections);
   then, idle, its RSS is sampled for 10 s and its CPU time (user + system, ``/proc/<pid>/stat``)
   taken over them; its next periodic pass (``--interval 60s``; a webhook
   without a new commit makes no converged release due) is the warm full no-op pass. Pass time
   comes from ``pipectl_reconcile_duration_seconds`` (``/metrics``) and
   the wall clock; RSS is VmRSS from ``/proc/<pid>/status`` sampled every 0.2 s;
5. commits a ``retention.ms`` change ``BENCH_COMMITS`` times (default 10; each a new version 1.0.k:
   the same version with other content is refused as VersionReused) to the release the controller
   visits last (releases are visited in name order) and times each commit → visible in Kafka (median
   and p95): a webhook (or a new commit) makes every release due, so this is the worst case of
   commit-to-applied at this scale;
6. removes the topics, the databases (a few connections in parallel) and the DAGs.

Why in-process for counting: the controller process does not expose its adapters' call counts;
the in-process runtime is the same code (same ``Controller``, ``Reconciler``, adapters) minus the
HTTP API and the leader lock. RSS is only taken from the real process.

Switches for finding where a pass goes: ``BENCH_KEEP=DIR`` keeps the generated repo and state in
``DIR`` (a later run with the same ``DIR`` reuses them, so 100 releases converge once) and skips the
cleanup; ``BENCH_PASS_ONLY=1`` stops after step 3; ``BENCH_PROFILE=1`` runs the in-process pass under
cProfile and writes its top functions to ``bench/results/scale_profile.txt`` (the first pass's to
``scale_profile_1st.txt``);
``bench_scale.py cleanup`` removes what a kept ``DIR`` created (topics, databases, DAGs, the dir).

Writes ``bench/results/scale_<RELEASES>.json``. Run: ``.venv/bin/python bench/bench_scale.py
[RELEASES]`` (needs the stack up; 3-7 min for 100 releases on 2 shared cores at load 4-11, half of
it the first converge; ``BENCH_DAG_EVERY`` sets how many releases get a DAG). With
``BENCH_HIVE_METASTORE=1`` the environment names the stack's metastore (``hive.metastoreUri``), so
passes read Hive from its Thrift API; step 3 then also runs the same in-process pass with the
shared Hive adapter on the SQL path (``SHOW TABLE EXTENDED``), for a comparison in one run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    DAG_SOURCE,
    HIVE_HOST,
    HIVE_PORT,
    ControllerProcess,
    cleanup,
    emit_json,
    env_yaml,
    git_commit,
    git_init,
    install_sigterm,
    kafka_admin,
    machine,
    median,
    new_uid,
    percentile,
    quiet_logs,
    reconcile_histogram,
    render_table,
    rss_mib,
    say,
    sqlite_rows,
    stack_info,
    topic_config,
)

RELEASES = 100
DAG_EVERY = int(os.environ.get("BENCH_DAG_EVERY", "20"))  # 0: no DAGs
CONVERGE_BUDGET = float(os.environ.get("BENCH_CONVERGE_BUDGET", "480"))
PASS_BUDGET = 300.0
COMMITS = int(os.environ.get("BENCH_COMMITS", "10"))
"""Commit → visible samples (each a new version of the release visited last)."""
COMMIT_GAP = 2.0
"""Seconds between samples, so the release's follow-up pass of one commit is over before the next."""
WARM_INTERVAL = "60s"
"""The controller process's --interval: its next periodic pass is the warm no-op pass."""
BACKENDS = ("kafka", "hive", "presto", "airflow", "spark")
FAILED = ("Failed", "RolledBack", "Invalid")


def release_yaml(name: str, i: int, dag: str | None) -> str:
    r = f"r{i:03d}"
    dags = f"  dags:\n    - {{id: {dag}, path: dags/{dag}.py}}\n" if dag else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - {{name: {r}.input, partitions: 1, replicationFactor: 1, config: {{retention.ms: "3600000"}}}}
    - {{name: {r}.output, partitions: 1, replicationFactor: 1}}
    - {{name: {r}.dlq, partitions: 1, replicationFactor: 1, config: {{retention.ms: "86400000"}}}}
    - {{name: {r}.audit, partitions: 1, replicationFactor: 1}}
    - {{name: {r}.metrics, partitions: 1, replicationFactor: 1}}
  tables:
    - name: {r}.events
      columns: [{{name: id, type: string}}, {{name: v, type: double}}]
      partitionedBy: [{{name: dt, type: string}}]
    - name: {r}.daily
      columns: [{{name: day, type: string}}, {{name: n, type: bigint}}]
  views:
    - {{name: {r}.events_v, table: {r}.events}}
    - {{name: {r}.daily_v, table: {r}.daily}}
{dags}  rollout:
    stages: [dev]
"""


def next_version(text: str) -> tuple[str, str]:
    """``text`` with its ``version: 1.0.k`` raised to 1.0.k+1, and that version: a kept run
    (``BENCH_KEEP``) holds the versions an earlier run committed."""
    found = re.search(r"version: 1\.0\.(\d+)", text)
    if found is None:
        raise ValueError("no `version: 1.0.k` in the release")
    version = f"1.0.{int(found.group(1)) + 1}"
    return f"{text[:found.start()]}version: {version}{text[found.end():]}", version


class RssSampler(threading.Thread):
    """VmRSS of one process every ``period`` seconds, as (wall time, MiB)."""

    def __init__(self, pid: int, period: float = 0.2):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            v = rss_mib(self.pid)
            if v == v:  # not NaN
                self.samples.append((time.time(), v))
            self.halt.wait(self.period)

    def window(self, t0: float, t1: float) -> list[float]:
        """The samples taken in [t0, t1]; a window shorter than the period (a warm pass over 10
        releases) holds none, and then the sample nearest its end stands for it."""
        inside = [v for t, v in self.samples if t0 <= t <= t1]
        if inside or not self.samples:
            return inside
        return [min(self.samples, key=lambda s: abs(s[0] - t1))[1]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


KEEP = os.environ.get("BENCH_KEEP", "")
PASS_ONLY = os.environ.get("BENCH_PASS_ONLY") == "1"
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
RESULTS = Path(__file__).resolve().parent / "results"


def generate(repo: Path, uid: str, n: int, dags_folder: str) -> None:
    for d in ("releases", "environments", "dags"):
        (repo / d).mkdir(parents=True)
    (repo / "environments" / "dev.yaml").write_text(env_yaml(uid, dags_folder))
    for i in range(n):
        dag = f"{uid}_r{i:03d}_daily" if DAG_EVERY and i % DAG_EVERY == 0 else None
        if dag:
            (repo / "dags" / f"{dag}.py").write_text(DAG_SOURCE)
        (repo / "releases" / f"sc-{uid}-{i:03d}.yaml").write_text(release_yaml(f"sc-{uid}-{i:03d}", i, dag))
    git_init(repo)


def main() -> int:
    install_sigterm()
    cleanup_only = sys.argv[1:2] == ["cleanup"]
    n = int(sys.argv[1]) if len(sys.argv) > 1 and not cleanup_only else RELEASES
    started = machine()
    say(f"machine: {started['cpus']} cpu(s) {started['cpu_model']}, load {started['loadavg']}")
    info = stack_info()
    dags_folder = info["airflow_dags_folder"]
    tmp = Path(KEEP) if KEEP else Path(tempfile.mkdtemp(prefix="pipectl-sc-"))
    kept = (tmp / "uid").is_file()
    uid = (tmp / "uid").read_text().strip() if kept else new_uid("sc")
    repo = tmp / "repo"
    dag_ids = [f"{p.stem}__dev" for p in sorted((repo / "dags").glob("*.py"))] if kept else []
    if cleanup_only:
        if not kept:
            say("cleanup: BENCH_KEEP names no kept run")
            return 1
        _cleanup(uid, dag_ids, dags_folder, tmp)
        return 0
    say(f"prefix {uid}; work dir {tmp}" + (" (kept from an earlier run)" if kept else ""))
    ctl: ControllerProcess | None = None
    try:
        if not kept:
            tmp.mkdir(parents=True, exist_ok=True)
            (tmp / "uid").write_text(uid)
            generate(repo, uid, n, dags_folder)
            dag_ids = [f"{p.stem}__dev" for p in sorted((repo / "dags").glob("*.py"))]
        names = sorted(p.stem for p in (repo / "releases").glob("*.yaml"))
        n = len(names)
        resources = n * 10 + len(dag_ids)
        say(f"{n} releases, {resources} resources ({len(dag_ids)} DAGs) in {repo}")
        state = tmp / "state" / "state.db"
        ctl = ControllerProcess(repo, state, tmp / "controller.log", interval=WARM_INTERVAL)
        figures: dict[str, Any] = {"releases": n, "resources": resources, "dags": len(dag_ids)}
        code = run(ctl, uid, repo, state, names, figures)
        emit_json("scale", figures, started)
        out = RESULTS / f"scale_{n}.json"
        out.write_text(json.dumps({"machine": started, "figures": figures}, indent=2, default=str) + "\n")
        say(f"wrote {out}")
        return code
    finally:
        if ctl is not None:
            ctl.stop()
        if not KEEP:
            _cleanup(uid, dag_ids, dags_folder, tmp)


def _cleanup(uid: str, dag_ids: list[str], dags_folder: str, tmp: Path) -> None:
    t0 = time.time()
    drop_databases_parallel(uid)
    for p in cleanup(uid, dag_ids, dags_folder):
        say(f"cleanup problem: {p}")
    say(f"cleanup took {time.time() - t0:.0f}s")
    shutil.rmtree(tmp, ignore_errors=True)


def _dump_profile(prof: Any, name: str, seconds: float) -> None:
    """The pass's top functions (cumulative and own time) to ``bench/results/<name>.txt``."""
    import io
    import pstats

    out = io.StringIO()
    out.write(f"{name}: in-process no-op pass, {seconds:.2f}s wall, load {os.getloadavg()}\n")
    st = pstats.Stats(prof, stream=out)
    st.sort_stats("cumulative").print_stats(60)
    st.sort_stats("tottime").print_stats(40)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.txt").write_text(out.getvalue())
    say(f"  profile written to bench/results/{name}.txt")


def noop_pass(
    loop: Any, rt: Any, be: Any, names: list[str], state: Path, profile: str = ""
) -> tuple[float, dict[str, dict[str, int]], dict[str, float], bool, int]:
    """One full in-process no-op pass: (seconds, calls per backend and operation, seconds per
    release, every plan a no-op, runs recorded)."""
    runs_before = len(sqlite_rows(state, "SELECT run_id FROM runs"))
    durations: dict[str, float] = {}
    loop.on_pass = lambda _snap, d: durations.update(d)
    loop.stop.clear()
    be.reset_calls()
    for x in names:  # a bare trigger makes no converged release due: ask for each one
        loop.trigger(x)
    hits = rt.reconciler.ops.fast.hits
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    loop.run_once()
    in_s = time.perf_counter() - t
    if prof is not None:
        prof.disable()
        _dump_profile(prof, profile, in_s)
    say(f"  fast-path hits in this pass: {rt.reconciler.ops.fast.hits - hits} of {len(names)}")
    calls = be.call_detail()
    plans = [rt.reconciler.last_plans.get((x, "dev")) for x in names]
    noop = len(durations) == len(names) and all(p is not None and p.is_noop for p in plans)
    new_runs = len(sqlite_rows(state, "SELECT run_id FROM runs")) - runs_before
    return in_s, calls, durations, noop, new_runs

def run(
    ctl: ControllerProcess, uid: str, repo: Path, state: Path, names: list[str], figures: dict[str, Any]
) -> int:
    n = len(names)
    quiet_logs()
    from controller.engine.controller import Controller
    from controller.obs import memory
    from controller.plan.desired import stage_context
    from controller.wiring import build_runtime

    # --- 1. converge with the controller's loop, in-process -----------------------------------
    rss_before = rss_mib(os.getpid())
    memory.set_up_process()  # as `controller run` (controller/cli/run.py)
    rt = build_runtime(str(repo), f"sqlite:///{state}", share_live_state=True)  # as `controller run`
    loop = Controller(rt.source, rt.reconciler, interval=3600)
    worker = threading.Thread(target=loop.run, name="pipectl-loop", daemon=True)
    say(f"converging {n} releases with the controller loop (in-process) ...")
    t0 = time.time()
    worker.start()
    last_ok, last_print = -1, 0.0
    try:
        while True:
            ph = {k: str(v.get("stages", {}).get("dev", {}).get("phase", "-"))
                  for k, v in rt.store.list_statuses().items()}
            ok = sum(1 for p in ph.values() if p == "Succeeded")
            bad = [k for k, p in ph.items() if p in FAILED]
            since = time.time() - last_print
            if ok == n or bad or (ok != last_ok and since >= 10) or since >= 30:
                say(f"  {ok}/{n} Succeeded, {len(ph)} reached; {time.time() - t0:.0f}s; "
                    f"load {os.getloadavg()[0]:.1f}")
                last_ok, last_print = ok, time.time()
            if bad:
                msg = (rt.store.get_status(bad[0]) or {}).get("stages", {}).get("dev", {}).get("message", "")
                say(f"release {bad[0]} failed: {msg}")
                return 1
            if ok == n:
                break
            if time.time() - t0 > CONVERGE_BUDGET:
                say(f"only {ok}/{n} converged within the budget of {CONVERGE_BUDGET:.0f}s; giving up")
                figures["converged_within_budget"] = ok
                return 1
            time.sleep(1.0)
    finally:
        loop.stop.set()
        loop.wake.set()
        worker.join(timeout=300)
    converge_s = time.time() - t0
    figures["converge_seconds"] = round(converge_s, 1)
    figures["converge_seconds_per_release"] = round(converge_s / n, 2)
    say(f"all {n} Succeeded after {converge_s:.0f}s ({converge_s / n:.2f}s per release)")

    # --- 2. one full no-op pass in-process: calls per backend --------------------------------
    say(f"in-process full no-op pass over {n} releases (counting backend calls) ...")
    snap = loop.snapshot()
    envs = {k: snap.environment(k) for k in snap.environments}
    be = rt.wiring.backends(stage_context("dev", envs), repo)
    hive_path = "metastore" if be.hive.metastore is not None else "sql"
    first = noop_pass(loop, rt, be, names, state, "scale_profile_1st" if PROFILE else "")
    first_calls = sum(sum(v.values()) for v in first[1].values())
    say(f"  first pass: {first[0]:.2f}s, {first_calls} calls, every plan a no-op: {first[3]} "
        "(after a converge in this process, or cold on a kept run)")
    figures["inprocess_first_noop_pass_s"] = round(first[0], 2)
    figures["inprocess_first_noop_calls_detail"] = first[1]
    # the measured pass is the next one, as the controller repeats it: the fast path has seen every
    # release's converged no-op pass, and the snapshot knows each release's scopes to prefetch
    in_s, calls, durations, noop, new_runs = noop_pass(
        loop, rt, be, names, state, "scale_profile" if PROFILE else "")
    by_backend = {b: sum(calls.get(b, {}).values()) for b in BACKENDS}
    total = sum(by_backend.values())
    d = list(durations.values())
    say(f"  {in_s:.1f}s, {total} backend calls (hive {by_backend['hive']} on the {hive_path} path), "
        f"every plan a no-op: {noop}, runs recorded: {new_runs}")
    if not noop or new_runs or len(durations) != n:
        say(f"FAILED: not a full no-op pass ({len(durations)}/{n} releases visited, {new_runs} runs)")
        return 1
    if hive_path == "metastore" and "show_table_extended" in calls.get("hive", {}):
        say(f"FAILED: the Hive reads did not take the metastore path: {calls['hive']}")
        return 1
    figures["hive_read_path"] = hive_path
    if be.hive.metastore is not None:  # the same pass on the SQL path, for a comparison in one run
        # without the metastore there is no notification log either: the pass reads every database
        metastore, events = be.hive.metastore, be.hive.events
        be.hive.metastore = be.hive.events = None
        try:
            sql_s, sql_calls, sql_durations, sql_noop, sql_runs = noop_pass(loop, rt, be, names, state)
        finally:
            be.hive.metastore, be.hive.events = metastore, events
        sql_hive = sum(sql_calls.get("hive", {}).values())
        say(f"  the same pass on the Hive SQL path: {sql_s:.1f}s, hive {sql_hive} calls, no-op: {sql_noop}")
        if not sql_noop or sql_runs or len(sql_durations) != n:
            say("FAILED: the SQL-path comparison pass was not a full no-op pass")
            return 1
        figures["sql_path_noop_pass_s"] = round(sql_s, 1)
        figures["sql_path_noop_calls_detail"] = sql_calls
    figures.update(
        {
            "inprocess_noop_pass_s": round(in_s, 1),
            "inprocess_per_release_ms_median": round(median(d) * 1000, 1),
            "inprocess_per_release_ms_p95": round(percentile(d, 95) * 1000, 1),
            "inprocess_all_plans_noop": noop,
            "inprocess_runs_recorded": new_runs,
            "noop_calls_per_backend": by_backend,
            "noop_calls_detail": calls,
            "noop_calls_total": total,
            "noop_calls_per_release": round(total / n, 2),
            "bench_process_rss_mib": {"before_runtime": round(rss_before, 1),
                                      "after_pass": round(rss_mib(os.getpid()), 1)},
        }
    )
    rt.store.close()
    if PASS_ONLY:
        say(f"in-process pass {in_s:.2f}s; stopping after it (BENCH_PASS_ONLY=1)")
        return 0

    # --- 3. the real controller process: first pass, idle RSS, warm pass ----------------------
    # One release gets a new version first, so the process also deploys once (the first deploy
    # imports the gate machinery: a long-running controller has it loaded; scipy loads only with a
    # distribution statistic, which these releases do not declare).
    bumped = names[0]
    path = repo / "releases" / f"{bumped}.yaml"
    text, version = next_version(path.read_text())
    path.write_text(text)
    git_commit(repo, f"{bumped} {version}")
    say(f"starting `pipectl controller run` on the same repo and state; its first pass deploys "
        f"{bumped} {version} and finds the other {n - 1} releases in sync ...")
    others_before = _runs_not_of(state, bumped)
    t_launch = time.time()
    ctl.start()
    sampler = RssSampler(ctl.pid)
    sampler.start()
    t_up = time.time()

    def count(over: list[str] = names) -> tuple[float, float]:
        h = reconcile_histogram(ctl.metrics())
        return sum(h.get(x, (0.0, 0.0))[0] for x in over), sum(h.get(x, (0.0, 0.0))[1] for x in over)

    def wait_count(target: float, over: list[str] = names) -> tuple[float, float, float]:
        deadline = time.time() + PASS_BUDGET
        while time.time() < deadline:
            s, c = count(over)
            if c >= target:
                return s, c, time.time()
            time.sleep(0.2)
        raise TimeoutError(f"pass did not finish within {PASS_BUDGET:.0f}s")

    # n passes, then the promoted release's immediate follow-up pass
    s_cold, _c_cold, t_cold = wait_count(n + 1)
    cold_during = sampler.window(t_launch, t_cold)
    say(f"  first pass: {n} releases {t_cold - t_up:.1f}s after the API came up "
        f"({s_cold:.1f}s in reconcile); RSS up to {max(cold_during):.0f} MiB")
    time.sleep(3.0)
    t_idle0, cpu0 = time.time(), cpu_seconds(ctl.pid)
    time.sleep(10.0)
    idle_cpu = (cpu_seconds(ctl.pid) - cpu0) / (time.time() - t_idle0) * 100
    idle = sampler.window(t_idle0, time.time())
    # A webhook without a new commit wakes nothing (a converged release is not due): the warm pass
    # is the controller's next periodic pass (--interval), timed from its first release to its last.
    say(f"  idle: RSS {median(idle):.0f} MiB, CPU {idle_cpu:.2f} % of one core; "
        "waiting for the periodic warm full no-op pass ...")
    # Counted over the releases that did not deploy (the deployed one is requeued sooner).
    others = [x for x in names if x != bumped]
    s1, c1 = count(others)
    _s, _c, t_hook = wait_count(c1 + 1, others)
    s2, _c2, t_warm = wait_count(c1 + len(others), others)
    warm_during = sampler.window(t_hook, t_warm)
    time.sleep(2.0)
    after = sampler.window(t_warm, time.time())
    new_runs_sub = _runs_not_of(state, bumped) - others_before
    warm_wall, warm_sum = t_warm - t_hook, s2 - s1
    say(f"  warm pass: {warm_wall:.1f}s wall, {warm_sum:.1f}s in reconcile; "
        f"RSS up to {max(warm_during):.0f} MiB")

    # --- 4. commit → applied for the release the controller visits last ----------------------
    last = names[-1]
    topic = f"{uid}.r{n - 1:03d}.input"
    path = repo / "releases" / f"{last}.yaml"
    admin = kafka_admin()
    latencies: list[float] = []
    found = re.search(r'retention\.ms: "(\d+)"', path.read_text())  # the input topic's (a kept run may
    retention = found.group(1) if found else "3600000"  # have toggled it in an earlier run)
    for k in range(1, COMMITS + 1):
        # changed content needs a new version (the same version with other content is VersionReused)
        new = "7200000" if retention == "3600000" else "3600000"
        text = path.read_text().replace(f'retention.ms: "{retention}"', f'retention.ms: "{new}"', 1)
        text, version = next_version(text)
        path.write_text(text)
        retention = new
        git_commit(repo, f"{last} {version}: retention {new}")
        say(f"commit {k}/{COMMITS}: retention.ms of {topic} (release {last}, visited last); webhook; "
            "polling Kafka ...")
        t_commit = time.time()
        ctl.webhook()
        deadline = time.time() + PASS_BUDGET
        t_vis = None
        while time.time() < deadline:
            if topic_config(admin, topic, "retention.ms") == new:
                t_vis = time.time()
                break
            time.sleep(0.05)
        if t_vis is None:
            break
        latencies.append(t_vis - t_commit)
        say(f"  commit → visible for the last release: {latencies[-1]:.2f}s")
        time.sleep(COMMIT_GAP)
    last_latency = median(latencies) if len(latencies) == COMMITS else None
    shown = (f"median {last_latency:.2f}s, p95 {percentile(latencies, 95):.2f}s over {COMMITS}"
             if last_latency is not None else "not within the budget")
    say(f"  commit → visible for the last release: {shown}")
    sampler.halt.set()
    ctl.stop()
    figures.update(
        {
            "process_first_pass_wall_s": round(t_cold - t_up, 1),
            "process_first_pass_sum_s": round(s_cold, 1),
            "process_warm_pass_wall_s": round(warm_wall, 1),
            "process_warm_pass_sum_s": round(warm_sum, 1),
            "process_runs_recorded_for_unchanged_releases": new_runs_sub,
            "last_release_commit_to_visible_s": round(last_latency, 2) if last_latency is not None else None,
            "last_release_commit_to_visible_samples_s": [round(x, 3) for x in latencies],
            "last_release_commit_to_visible_p95_s": (
                round(percentile(latencies, 95), 3) if latencies else None),
            "idle_cpu_percent_of_one_core": round(idle_cpu, 2),
            "rss_mib": {
                "first_pass_max": round(max(cold_during), 1),
                "idle_median": round(median(idle), 1),
                "warm_pass_max": round(max(warm_during), 1),
                "warm_pass_median": round(median(warm_during), 1),
                "after_warm_pass": round(median(after), 1) if after else None,
            },
        }
    )

    # --- report --------------------------------------------------------------------------------
    dags = figures["dags"]
    print()
    print(f"{n} releases, {figures['resources']} resources ({dags} DAGs), one stage; "
          f"converged in {converge_s:.0f}s ({converge_s / n:.2f}s per release)")
    print()
    print(f"Full no-op pass over {n} releases")
    rows = [
        ["in-process Controller.run_once", in_s, in_s / n * 1000],
        ["controller process, first pass (n-1 no-op + 1 deploy)", t_cold - t_up, (t_cold - t_up) / n * 1000],
        ["controller process, warm periodic pass (2nd → last release)", warm_wall, warm_wall / n * 1000],
        ["  of which inside reconcile (histogram sum)", warm_sum, warm_sum / n * 1000],
    ]
    print(render_table(["measure", "seconds", "ms per release"], rows))
    print(f"in-process per release: median {median(d) * 1000:.0f} ms, "
          f"p95 {percentile(d, 95) * 1000:.0f} ms; every plan a no-op: {noop}; "
          f"runs recorded by the no-op passes: {new_runs + new_runs_sub}")
    print()
    print(f"Backend round trips of one full no-op pass ({n} releases)")
    rows = []
    for b in BACKENDS:
        ops = calls.get(b, {})
        rows.append([b, by_backend[b], by_backend[b] / n,
                     ", ".join(f"{op}={k}" for op, k in sorted(ops.items())) or "-"])
    rows.append(["total", total, total / n, ""])
    print(render_table(["backend", "calls", "per release", "operations"], rows))
    print(f"target: at most one read per backend kind plus one per Hive database ({n} databases here): "
          f"{5 + n}")
    print()
    if last_latency is not None:
        print(f"Commit → applied for the release visited last (a retention.ms change + webhook), "
              f"{COMMITS} commits: median {last_latency:.2f}s, p95 {percentile(latencies, 95):.2f}s; "
              f"median = {last_latency / warm_wall:.2f}x the warm full no-op pass")
        print()
    print("Controller process RSS (VmRSS, MiB)")
    rows = [
        [f"idle at {n} releases (median of 10 s)", median(idle)],
        ["during the first pass (max; includes a deploy)", max(cold_during)],
        ["during the warm pass (max)", max(warm_during)],
        ["during the warm pass (median)", median(warm_during)],
    ]
    print(render_table(["when", "MiB"], rows))
    print(f"Controller process CPU while idle at {n} releases (10 s, user + system): "
          f"{idle_cpu:.2f} % of one core")
    print()
    if last_latency is None:
        say(f"FAILED: commit {len(latencies) + 1} of the last release was not applied within the budget")
        return 1
    return 0


def _runs_not_of(state: Path, release: str) -> int:
    return int(sqlite_rows(state, "SELECT COUNT(*) FROM runs WHERE release != ?", (release,))[0][0])


def drop_databases_parallel(uid: str, workers: int = 4) -> None:
    """DROP DATABASE ... CASCADE for every database under the prefix, over a few connections."""
    from pyhive import hive

    try:
        con = hive.connect(HIVE_HOST, HIVE_PORT, auth="NOSASL")
        cur = con.cursor()
        cur.execute(f"SHOW DATABASES LIKE '{uid}_*'")
        dbs = [str(r[0]) for r in cur.fetchall() if re.fullmatch(rf"{uid}_[a-z0-9_]+", str(r[0]))]
        con.close()
    except Exception as e:
        say(f"cleanup: cannot list databases: {e}")
        return
    if not dbs:
        return
    say(f"cleanup: dropping {len(dbs)} databases over {workers} connections ...")
    chunks = [dbs[i::workers] for i in range(workers)]

    def drop(chunk: list[str]) -> None:
        c = hive.connect(HIVE_HOST, HIVE_PORT, auth="NOSASL")
        try:
            k = c.cursor()
            for db in chunk:
                k.execute(f"DROP DATABASE IF EXISTS `{db}` CASCADE")
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(drop, ch) for ch in chunks if ch]:
            try:
                f.result()
            except Exception as e:
                say(f"cleanup: {e}")


if __name__ == "__main__":
    sys.exit(main())
