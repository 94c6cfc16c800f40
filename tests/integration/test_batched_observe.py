"""Batched observation against the real stack (issue #17): the pass-wide snapshot
(``controller.engine.snapshot``) reads the same live state as each release's own reads, and the
backend calls of a no-op pass do not grow with the number of releases, except per Hive database.

Three small releases on one ``dev`` stage: ``a`` (topic with a config, database, table, view, DAG),
``b`` (topic, DAG; no database) and ``c`` (topic, its own database, table, view).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from controller.engine.controller import Controller
from controller.engine.snapshot import LiveSnapshot
from controller.engine.stage_ops import StageOps
from controller.plan.desired import RolloutInputs, stage_context
from controller.wiring import build_runtime
from tests.integration import ctlkit


def _release(name: str, uid: str, *, db: str | None, dag: bool) -> str:
    hive = ""
    if db:
        hive = f"""\
  tables:
    - name: {db}.counts
      columns: [{{name: k, type: string}}, {{name: code, type: "varchar(8)"}}, {{name: n, type: bigint}}]
      partitionedBy: [{{name: dt, type: string}}]
      properties: {{team: it}}
  views:
    - {{name: {db}.counts_v, table: {db}.counts}}
"""
    dags = f"  dags:\n    - {{id: {uid}_{name}_daily, path: dags/{uid}_{name}_daily.py}}\n" if dag else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - {{name: {name}.events, partitions: 2, replicationFactor: 1, config: {{retention.ms: "3600000"}}}}
{hive}{dags}  rollout:
    stages: [dev]
"""


def test_batched_reads_equal_per_release_reads_and_calls_do_not_grow(
    stack: dict[str, Any], unique_name: str, tmp_path: Path
) -> None:
    uid = unique_name
    dags_folder = str(stack["airflow_dags_folder"])
    files = {
        "environments/dev.yaml": ctlkit.stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", dags_folder),
        "releases/a.yaml": _release("a", uid, db="sa", dag=True),
        "releases/b.yaml": _release("b", uid, db=None, dag=True),
        "releases/c.yaml": _release("c", uid, db="sc", dag=False),
        f"dags/{uid}_a_daily.py": ctlkit.DAG_SOURCE,
        f"dags/{uid}_b_daily.py": ctlkit.DAG_SOURCE,
    }
    repo = ctlkit.init_repo(tmp_path, files, "three releases")
    rt = build_runtime(str(repo), f"sqlite:///{tmp_path / 'state.db'}", bake_seconds=0, share_live_state=True)
    ctl = Controller(rt.source, rt.reconciler, interval=3600)
    names = ["a", "b", "c"]
    try:
        snap = ctl.snapshot()
        ctx = stage_context("dev", {n: snap.environment(n) for n in snap.environments})
        be = rt.wiring.backends(ctx, repo)

        def phase(name: str) -> str:
            return str(ctlkit.stage_status(tmp_path / "state.db", name, "dev").get("phase", "-"))

        deadline = time.monotonic() + 300
        while any(phase(n) != "Succeeded" for n in names):
            assert time.monotonic() < deadline, {n: phase(n) for n in names}
            assert not {phase(n) for n in names} & {"Failed", "Invalid"}, {n: phase(n) for n in names}
            for n in names:
                ctl.trigger(n)
            ctl.run_once()
            time.sleep(1)  # the test's own pacing between passes, not a worker's wait

        # 1. the snapshot's answers equal each release's own reads (the pre-#17 path)
        ops = rt.reconciler.ops
        fresh = LiveSnapshot(ops.clock, StageOps.observe_adapters)
        compared = 0
        for n in names:
            rel = snap.release(n)
            desired = ops.desired(rel, ctx, RolloutInputs(serving_version="1.0.0"), snap.commit)
            own = StageOps.observe(be, desired)
            batched = fresh.observe(be.adapters, desired)
            assert batched == own, n
            assert len(own) == len(desired), (n, sorted(own))  # converged: every resource is there
            compared += len(own)
        assert compared == 11  # a: 5, b: 2, c: 4

        # 2. backend calls of a no-op pass: the same for 1 and 2 releases without a new database,
        #    and only the new database's reads more for the third
        def noop_pass(over: list[str]) -> dict[str, int]:
            runs = {n: len(rt.store.history(n)) for n in names}
            for n in over:
                ctl.trigger(n)
            be.reset_calls()
            ctl.run_once()
            calls = be.calls()
            for n in over:
                assert rt.reconciler.last_plans[(n, "dev")].is_noop, n
            assert {n: len(rt.store.history(n)) for n in names} == runs  # nothing applied
            return calls

        noop_pass(names)  # warm-up: the fast path remembers each converged pass
        one, two, three = noop_pass(["a"]), noop_pass(["a", "b"]), noop_pass(names)
        assert one == two, (one, two)
        assert {k: v for k, v in three.items() if k != "hive"} == {k: v for k, v in one.items() if k != "hive"}
        assert three["hive"] - one["hive"] == 2, (one, three)  # sc: GetColumns + SHOW TABLE EXTENDED
        assert one["kafka"] == 2 and one["airflow"] >= 1, one  # one describe, one describe_configs
        print(f"no-op pass calls: 1 release {one}, 2 releases {two}, 3 releases {three}")
    finally:
        ctlkit.drop_everything(uid, [f"it{uid}_sa", f"it{uid}_sc"], dags_folder, f"{uid}_*")
