"""Backend round trips of one no-op reconcile pass for a release of ~10 resources (issue 4).

What it does, against the local stack (127.0.0.1 only):

1. writes a temporary git repo with one ``dev`` environment under a unique prefix and one release
   of 10 resources: 1 Hive database, 3 Kafka topics, 3 tables, 2 serving views, 1 Airflow DAG
   (no Spark job: its start is minutes of JVM, not what this counts);
2. builds the controller in-process (``controller.wiring.build_runtime`` + ``Controller``) and runs
   passes until the release is Succeeded on dev (the apply pass is timed and counted too);
3. runs ``PASSES`` no-op passes (``Controller.run_once`` after ``trigger``: git resolve, manifests,
   status, live-state reads, plan, status write), checks each planned no action, and reports the
   backend round trips per backend and per operation from ``StageBackends.call_detail()``,
   against the target of issue 4: one batched read per backend kind;
4. splits the pass time into live-state reads per backend (timed around each adapter's
   ``observe``), state-store statements (SQLAlchemy cursor events) and the rest;
5. removes the topics, the database and the DAG it made.

Run: ``.venv/bin/python bench/bench_calls_per_pass.py`` (needs the stack up; ~30 s).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    DAG_SOURCE,
    cleanup,
    emit_json,
    env_yaml,
    git_init,
    install_sigterm,
    machine,
    median,
    new_uid,
    percentile,
    quiet_logs,
    render_table,
    say,
    stack_info,
)

PASSES = 7
CONVERGE_TIMEOUT = 300.0
BACKENDS = ("kafka", "hive", "presto", "airflow", "spark")


def release_yaml(name: str, dag: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - {{name: shop.orders, partitions: 2, replicationFactor: 1, config: {{retention.ms: "3600000"}}}}
    - {{name: shop.payments, partitions: 1, replicationFactor: 1, config: {{cleanup.policy: delete}}}}
    - {{name: shop.refunds, partitions: 1, replicationFactor: 1}}
  tables:
    - name: shop.orders
      columns: [{{name: order_id, type: string}}, {{name: amount, type: double}}]
      partitionedBy: [{{name: dt, type: string}}]
    - name: shop.payments
      columns:
        - {{name: payment_id, type: string}}
        - {{name: order_id, type: string}}
        - {{name: ok, type: boolean}}
    - name: shop.daily
      columns: [{{name: day, type: string}}, {{name: revenue, type: double}}]
      properties: {{team: bench}}
  views:
    - {{name: shop.orders_v, table: shop.orders}}
    - {{name: shop.daily_v, table: shop.daily}}
  dags:
    - {{id: {dag}, path: dags/{dag}.py}}
  rollout:
    stages: [dev]
"""


class Timers:
    """Wall time per key, accumulated by wrapped callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - t0
                self.count[key] += 1

        return timed

    def wrap_keyed(self, key: Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                k = key(*args, **kwargs)
                self.seconds[k] += time.perf_counter() - t0
                self.count[k] += 1

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.count.clear()


def time_round_trips(be: Any, timers: Timers) -> None:
    """Time each backend round trip by operation (wraps the adapters' private call points;
    a point that is not there is skipped, the counts from ``call_detail`` stay exact)."""
    points: list[tuple[Any, str, Callable[..., str]]] = [
        (be.hive, "_run", lambda sql, op, **_: f"hive.{op}"),
        (be.hive, "_metadata_columns", lambda *a, **_: "hive.get_columns"),
        (getattr(be.hive, "metastore", None), "_call", lambda method, *a, **_: f"hive.hms.{method}"),
        (be.kafka, "_describe_topics", lambda *a, **_: "kafka.describe_topics"),
        (be.kafka, "_describe_all", lambda *a, **_: "kafka.describe_topics"),
        (be.kafka, "_describe_configs", lambda *a, **_: "kafka.describe_configs"),
        (be.airflow, "_call", lambda op, *a, **_: f"airflow.{op}"),
    ]
    for obj, attr, key in points:
        fn = getattr(obj, attr, None)
        if callable(fn):
            setattr(obj, attr, timers.wrap_keyed(key, fn))


def main() -> int:
    install_sigterm()
    started = machine()
    say(f"machine: {started['cpus']} cpu(s) {started['cpu_model']}, load {started['loadavg']}")
    info = stack_info()
    dags_folder = info["airflow_dags_folder"]
    uid = new_uid("cp")
    name = f"calls-{uid}"
    dag_logical = f"{uid}_daily"
    dag_id = f"{dag_logical}__dev"
    tmp = Path(tempfile.mkdtemp(prefix=f"pipectl-{uid}-"))
    say(f"prefix {uid}; work dir {tmp}")
    try:
        return run(tmp, uid, name, dag_logical, dags_folder, started)
    finally:
        problems = cleanup(uid, [dag_id], dags_folder)
        for p in problems:
            say(f"cleanup problem: {p}")
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, uid: str, name: str, dag_logical: str, dags_folder: str, started: dict[str, Any]) -> int:
    from sqlalchemy import event

    quiet_logs()

    from controller.engine.controller import Controller
    from controller.plan.desired import stage_context
    from controller.wiring import build_runtime

    repo = tmp / "repo"
    for d in ("releases", "environments", "dags"):
        (repo / d).mkdir(parents=True)
    (repo / "environments" / "dev.yaml").write_text(env_yaml(uid, dags_folder))
    (repo / "releases" / "calls.yaml").write_text(release_yaml(name, dag_logical))
    (repo / "dags" / f"{dag_logical}.py").write_text(DAG_SOURCE)
    git_init(repo)

    # the controller's configuration: one pass-wide live-state snapshot (controller/engine/snapshot.py)
    state_url = f"sqlite:///{tmp / 'state' / 'state.db'}"
    rt = build_runtime(str(repo), state_url, bake_seconds=0, share_live_state=True)
    ctl = Controller(rt.source, rt.reconciler, interval=3600)
    snap = ctl.snapshot()
    envs = {n: snap.environment(n) for n in snap.environments}
    be = rt.wiring.backends(stage_context("dev", envs), repo)

    # time spent reading live state, per backend (the adapters are shared by every pass)
    timers = Timers()
    for bname in ("kafka", "hive", "airflow", "spark"):
        adapter = getattr(be, bname)
        adapter.observe = timers.wrap(bname, adapter.observe)
        if hasattr(adapter, "observe_kinds"):  # the reconciler reads Hive's kinds together
            adapter.observe_kinds = timers.wrap(bname, adapter.observe_kinds)
        if hasattr(adapter, "observe_scope"):  # the snapshot reads whole scopes
            adapter.observe_scope = timers.wrap(bname, adapter.observe_scope)
    ops = Timers()
    time_round_trips(be, ops)
    store_t: dict[str, float] = {"n": 0, "s": 0.0}

    @event.listens_for(rt.store.engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(rt.store.engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool) -> None:
        store_t["n"] += 1
        store_t["s"] += time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())

    def stage_status() -> dict[str, Any]:
        raw = rt.store.get_status(name) or {}
        return dict(raw.get("stages", {}).get("dev", {}))

    def phase() -> str:
        return str(stage_status().get("phase", "-"))

    # --- converge ----------------------------------------------------------------------------
    say(f"converging release {name} (10 resources) on dev ...")
    be.reset_calls()
    t0 = time.monotonic()
    passes = 0
    while phase() != "Succeeded":
        if time.monotonic() - t0 > CONVERGE_TIMEOUT:
            say(f"release did not converge within {CONVERGE_TIMEOUT:.0f}s (phase {phase()})")
            return 1
        ctl.trigger(name)
        ctl.run_once()
        passes += 1
        say(f"  pass {passes}: phase {phase()}")
        if phase() in ("Failed", "RolledBack", "Invalid"):
            say(f"release failed to converge: {stage_status().get('message')}")
            return 1
    converge_s = time.monotonic() - t0
    apply_calls = be.call_detail()
    runs = rt.store.history(name)
    actions = rt.store.journal_rows(name)
    say(f"converged in {converge_s:.1f}s over {passes} pass(es), {len(actions)} journaled action(s)")

    # --- no-op passes ------------------------------------------------------------------------
    say(f"{PASSES} no-op passes (1 warm-up) ...")
    ctl.trigger(name)
    ctl.run_once()  # warm-up: connections, caches
    per_pass: list[dict[str, dict[str, int]]] = []
    times: list[float] = []
    read_s: list[dict[str, float]] = []
    op_s: list[dict[str, float]] = []
    store_s: list[float] = []
    store_n: list[int] = []
    for i in range(PASSES):
        be.reset_calls()
        timers.reset()
        ops.reset()
        store_t.update(n=0, s=0.0)
        ctl.trigger(name)
        t = time.perf_counter()
        ctl.run_once()
        dt = time.perf_counter() - t
        plan = rt.reconciler.last_plans[(name, "dev")]
        if not plan.is_noop:
            say(f"pass {i}: expected a no-op plan, got {[a.describe() for a in plan.actions]}")
            return 1
        per_pass.append(be.call_detail())
        times.append(dt)
        read_s.append(dict(timers.seconds))
        op_s.append({k: v / max(1, ops.count[k]) for k, v in ops.seconds.items()})
        store_s.append(store_t["s"])
        store_n.append(int(store_t["n"]))
        n_calls = sum(sum(v.values()) for v in per_pass[-1].values())
        say(f"  pass {i + 1}: {dt * 1000:.0f} ms, {n_calls} calls")
    if len(rt.store.history(name)) != len(runs):
        say("a no-op pass recorded a run: it changed something")
        return 1

    # calls are deterministic per pass; check and take the first
    detail = per_pass[0]
    stable = all(p == detail for p in per_pass)
    by_backend = {b: sum(detail.get(b, {}).values()) for b in BACKENDS}
    total = sum(by_backend.values())
    used = {"kafka": ["Topic"], "hive": ["Database", "Table", "View"], "airflow": ["Dag"]}
    target_backend = {b: (1 if b in used else 0) for b in BACKENDS}
    target_kind = {b: len(used.get(b, [])) for b in BACKENDS}

    print()
    print(f"Release {name}: 10 resources (1 database, 3 topics, 3 tables, 2 views, 1 DAG), stage dev")
    print(f"Converge (apply) {converge_s:.1f}s in {passes} passes, {len(actions)} actions; "
          f"calls during converge: {sum(sum(v.values()) for v in apply_calls.values())}")
    print()
    print("Backend round trips of one no-op pass" + ("" if stable else " (NOT stable across passes)"))
    rows = []
    for b in BACKENDS:
        b_ops = detail.get(b, {})
        rows.append(
            [
                b,
                by_backend[b],
                target_backend[b],
                target_kind[b],
                ", ".join(f"{op}={k}" for op, k in sorted(b_ops.items())) or "-",
            ]
        )
    rows.append(["total", total, sum(target_backend.values()), sum(target_kind.values()), ""])
    print(render_table(["backend", "actual", "target/backend", "target/kind", "operations"], rows))
    print()
    med = median(times)
    mean = statistics.fmean(times)
    reads = {b: statistics.fmean([r.get(b, 0.0) for r in read_s]) for b in ("kafka", "hive", "airflow")}
    reads_total = sum(reads.values())
    st = statistics.fmean(store_s)
    rest = mean - reads_total - st
    print(
        f"Time of a no-op pass over {PASSES} passes: median {med * 1000:.0f} ms, "
        f"p95 {percentile(times, 95) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms"
    )
    rows = [
        ["whole no-op pass", mean * 1000, 100.0],
        *[[f"  live reads: {b}", reads[b] * 1000, 100 * reads[b] / mean] for b in reads],
        ["  state store SQL", st * 1000, 100 * st / mean],
        ["  rest (git, manifests, plan, status)", rest * 1000, 100 * rest / mean],
    ]
    print("Where it goes (means, so the parts add up)")
    print(render_table(["part", "mean ms", "share %"], rows))
    print(f"state-store statements per pass: {int(median(store_n))}")
    print()
    op_ms = {k: median([o[k] for o in op_s if k in o]) * 1000 for k in sorted({k for o in op_s for k in o})}
    print("Latency of one round trip by operation (median over the passes, ms)")
    op_rows = []
    for k, v in op_ms.items():
        backend, op = k.split(".", 1)
        op_rows.append([k, detail.get(backend, {}).get(op, 0), v])
    print(render_table(["operation", "calls/pass", "ms/call"], op_rows))
    print()

    figures = {
        "release": name,
        "resources": {"database": 1, "topic": 3, "table": 3, "view": 2, "dag": 1},
        "converge_seconds": round(converge_s, 2),
        "converge_passes": passes,
        "converge_actions": len(actions),
        "converge_calls": apply_calls,
        "noop_calls_per_backend": by_backend,
        "noop_calls_detail": detail,
        "noop_calls_total": total,
        "target_per_backend": target_backend,
        "target_per_kind": target_kind,
        "calls_stable_across_passes": stable,
        "noop_pass_ms_median": round(med * 1000, 1),
        "noop_pass_ms_p95": round(percentile(times, 95) * 1000, 1),
        "noop_pass_ms_min": round(min(times) * 1000, 1),
        "noop_pass_ms_stdev": round(statistics.pstdev(times) * 1000, 1),
        "noop_pass_ms_mean": round(mean * 1000, 1),
        "noop_read_ms_mean": {b: round(v * 1000, 1) for b, v in reads.items()},
        "noop_store_ms_mean": round(st * 1000, 1),
        "noop_rest_ms_mean": round(rest * 1000, 1),
        "noop_ms_per_call": {k: round(v, 1) for k, v in op_ms.items()},
        "noop_store_statements": int(median(store_n)),
        "passes": PASSES,
    }
    emit_json("calls_per_pass", figures, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
