"""Commit-to-applied latency with the webhook, split into controller time and backend time
(issue 5a).

What it does, against the local stack (127.0.0.1 only):

1. writes a temporary git repo: one ``dev`` environment under a unique prefix and one release
   without Spark jobs (1 database, 2 topics, 1 table, 1 serving view);
2. starts a real ``pipectl controller run`` process on it (``--interval 1h``, so only the webhook
   wakes it) and waits for the first version to be Succeeded (the cold start is reported too);
3. ``REPS`` times: commits a new version that changes the topic's ``retention.ms``, POSTs
   ``/hooks/git`` with the token, and polls Kafka with its own AdminClient until the broker reports
   the new value (commit → visible), then the state store until the stage is Succeeded at the new
   version (commit → Succeeded);
4. splits each repetition with the controller's own records: the ``new commit`` log line (pickup),
   the ``runs`` row of the apply (start/end), the ``journal`` rows (per action start/finish = time
   in the backend's apply calls) and the ``pipectl_reconcile_duration_seconds`` histogram of
   ``/metrics`` (the duration of the pass that applied the commit);
5. stops the controller (SIGTERM) and removes the topics and the database.

Backend time here is the time inside journaled actions; the live-state reads of a pass (observe,
and the executor's re-check before each action) fall in "controller" time because the controller
does not record them: ``bench_calls_per_pass.py`` measures those reads separately.

Run: ``.venv/bin/python bench/bench_commit_to_applied.py [REPS]`` (needs the stack up; ~30 s for 10).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
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
    parse_ts,
    percentile,
    reconcile_histogram,
    render_table,
    rss_mib,
    say,
    sqlite_rows,
    stack_info,
    topic_config,
)

REPS = 10
STEP_TIMEOUT = 120.0
BASE_RETENTION = 3_600_000


def release_yaml(name: str, version: str, retention: int) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: {version}
  topics:
    - {{name: lat.events, partitions: 2, replicationFactor: 1, config: {{retention.ms: "{retention}"}}}}
    - {{name: lat.errors, partitions: 1, replicationFactor: 1}}
  tables:
    - name: lat.counts
      columns: [{{name: k, type: string}}, {{name: n, type: bigint}}]
      partitionedBy: [{{name: dt, type: string}}]
  views:
    - {{name: lat.counts_v, table: lat.counts}}
  rollout:
    stages: [dev]
"""


def stage_of(state: Path, name: str) -> dict[str, Any]:
    if not state.exists():
        return {}
    rows = sqlite_rows(state, "SELECT status FROM releases WHERE name = ?", (name,))
    return dict(json.loads(rows[0][0]).get("stages", {}).get("dev", {})) if rows else {}


def wait(cond: Any, timeout: float, what: str, poll: float = 0.05) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time()
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def pickup_time(log: Path, commit: str) -> float | None:
    """Timestamp of the controller's ``new commit`` log line for ``commit``."""
    for line in log.read_text(errors="replace").splitlines():
        if commit in line and '"new commit"' in line:
            try:
                return parse_ts(json.loads(line)["timestamp"])
            except (ValueError, KeyError):
                return None
    return None


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -1e18
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def main() -> int:
    install_sigterm()
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else REPS
    started = machine()
    say(f"machine: {started['cpus']} cpu(s) {started['cpu_model']}, load {started['loadavg']}")
    info = stack_info()
    uid = new_uid("ca")
    tmp = Path(tempfile.mkdtemp(prefix=f"pipectl-{uid}-"))
    say(f"prefix {uid}; work dir {tmp}")
    ctl: ControllerProcess | None = None
    try:
        repo = tmp / "repo"
        for d in ("releases", "environments"):
            (repo / d).mkdir(parents=True)
        name = f"lat-{uid}"
        (repo / "environments" / "dev.yaml").write_text(env_yaml(uid, info["airflow_dags_folder"]))
        (repo / "releases" / "lat.yaml").write_text(release_yaml(name, "1.0.0", BASE_RETENTION))
        git_init(repo)
        state = tmp / "state" / "state.db"
        ctl = ControllerProcess(repo, state, tmp / "controller.log", interval="1h")
        return run(ctl, repo, state, name, f"{uid}.lat.events", reps, started)
    finally:
        if ctl is not None:
            ctl.stop()
        for p in cleanup(uid, [], info["airflow_dags_folder"]):
            say(f"cleanup problem: {p}")
        shutil.rmtree(tmp, ignore_errors=True)


def run(
    ctl: ControllerProcess, repo: Path, state: Path, name: str, topic: str, reps: int, started: dict[str, Any]
) -> int:
    admin = kafka_admin()
    t_start = time.time()
    say("starting `pipectl controller run` (interval 1h: only the webhook wakes it) ...")
    ctl.start()
    t_up = time.time()
    wait(lambda: stage_of(state, name).get("phase") == "Succeeded", 180, "1.0.0 Succeeded", poll=0.2)
    cold = time.time() - t_start
    say(f"cold start: process up in {t_up - t_start:.1f}s, 1.0.0 Succeeded {cold:.1f}s after launch")

    rows: list[dict[str, float | None]] = []
    expected = 2  # the first deploy pass and the no-op pass after its promotion
    for i in range(1, reps + 1):
        version, retention = f"1.0.{i}", BASE_RETENTION + i * 60_000
        # idle first: a promotion is followed by one more (no-op) pass, which must be over
        def idle(n: int = expected) -> bool:
            return passes(ctl, name) >= n

        wait(idle, 60, "the controller to go idle", poll=0.1)
        before = reconcile_histogram(ctl.metrics()).get(name, (0.0, 0.0))
        expected = int(before[1]) + 2
        (repo / "releases" / "lat.yaml").write_text(release_yaml(name, version, retention))
        sha = git_commit(repo, f"{version}: retention {retention}")
        t_commit = time.time()
        t_hook = ctl.webhook()

        def visible(want: str = str(retention)) -> bool:
            return topic_config(admin, topic, "retention.ms") == want

        def succeeded(want: str = version) -> bool:
            st = stage_of(state, name)
            return st.get("version") == want and st.get("phase") == "Succeeded"

        t_vis = wait(visible, STEP_TIMEOUT, f"retention.ms={retention}")
        t_ok = wait(succeeded, STEP_TIMEOUT, f"{version} Succeeded", poll=0.02)
        # the deploy pass's duration: the first new observation of the histogram
        pass_s: float | None = None
        deadline = time.time() + 30
        while time.time() < deadline:
            now = reconcile_histogram(ctl.metrics()).get(name, (0.0, 0.0))
            if now[1] >= before[1] + 1:
                pass_s = (now[0] - before[0]) if now[1] == before[1] + 1 else None
                break
            time.sleep(0.05)
        run_rows = sqlite_rows(
            state,
            "SELECT run_id, started_at, finished_at FROM runs"
            ' WHERE release = ? AND "commit" = ? AND kind = ?',
            (name, sha, "apply"),
        )
        if not run_rows:
            say(f"rep {i}: no apply run recorded for {sha[:8]}")
            return 1
        run_id, r_start, r_end = run_rows[0][0], parse_ts(run_rows[0][1]), parse_ts(run_rows[0][2])
        journal = sqlite_rows(
            state, "SELECT action_id, state, started_at, finished_at FROM journal WHERE run_id = ?", (run_id,)
        )
        spans = [(parse_ts(s), parse_ts(f)) for _a, _st, s, f in journal if f is not None]
        topic_row = [r for r in journal if r[0].startswith(f"Topic/{topic}/")]
        t_topic0 = parse_ts(topic_row[0][2]) if topic_row else None
        t_topic1 = parse_ts(topic_row[0][3]) if topic_row else None
        t_seen = pickup_time(ctl.log, sha)
        backend = union_seconds(spans)
        row: dict[str, float | None] = {
            "commit_to_visible": t_vis - t_commit,
            "commit_to_succeeded": t_ok - t_commit,
            "hook_post": t_hook - t_commit,
            "pickup": (t_seen - t_hook) if t_seen else None,
            "seen_to_run": (r_start - t_seen) if t_seen else None,
            "run_to_topic": (t_topic0 - r_start) if t_topic0 else None,
            "topic_action": (t_topic1 - t_topic0) if t_topic0 and t_topic1 else None,
            "topic_to_visible": (t_vis - t_topic1) if t_topic1 else None,
            "run": r_end - r_start,
            "backend_apply": backend,
            "controller": (t_ok - t_hook) - backend,
            "after_run": t_ok - r_end,
            "pass": pass_s,
            "actions": float(len(journal)),
        }
        rows.append(row)
        say(
            f"rep {i}: commit→visible {row['commit_to_visible']:.2f}s, commit→Succeeded "
            f"{row['commit_to_succeeded']:.2f}s, {len(journal)} actions "
            f"({', '.join(sorted({a.split('/')[0] for a, *_ in journal}))}), backend {backend:.2f}s"
        )

    def col(k: str) -> list[float]:
        return [float(v) for r in rows if (v := r.get(k)) is not None]

    def stat(k: str) -> tuple[float, float]:
        return median(col(k)), percentile(col(k), 95)

    vis_med = stat("commit_to_visible")[0]
    ok_med = stat("commit_to_succeeded")[0]
    print()
    print(f"Release {name}: 1 database, 2 topics, 1 table, 1 view; {reps} commits, each a new version")
    print(f"changing retention.ms of {topic}; cold start to first Succeeded: {cold:.1f}s")
    print()
    print("Commit → change visible in Kafka (seconds; share of the median commit→visible)")
    parts = [
        ("commit → webhook sent (bench)", "hook_post", "bench"),
        ("webhook → commit picked up", "pickup", "controller"),
        ("picked up → apply run starts", "seen_to_run", "controller + live reads"),
        ("run starts → topic action starts", "run_to_topic", "controller + re-check read"),
        ("topic action (alter + await)", "topic_action", "backend"),
        ("action done → bench sees it", "topic_to_visible", "poll granularity"),
        ("commit → visible", "commit_to_visible", "total"),
    ]
    print(
        render_table(
            ["part", "who", "median s", "p95 s", "share %"],
            [[p, who, *stat(k), 100 * stat(k)[0] / vis_med] for p, k, who in parts],
        )
    )
    print()
    print("Commit → stage Succeeded at the new version (seconds; share of the median commit→Succeeded)")
    parts2 = [
        ("backend: journaled actions (union)", "backend_apply"),
        ("controller: everything else", "controller"),
        ("  of which after the last action (verify, promote, status)", "after_run"),
        ("commit → Succeeded", "commit_to_succeeded"),
        ("deploy pass (pipectl_reconcile_duration_seconds)", "pass"),
        ("apply run (runs.started_at → finished_at)", "run"),
    ]
    print(
        render_table(
            ["part", "median s", "p95 s", "share %"],
            [[p, *stat(k), 100 * stat(k)[0] / ok_med] for p, k in parts2],
        )
    )
    rss = rss_mib(ctl.pid)
    ratio = median([c / b for c, b in zip(col("controller"), col("backend_apply"), strict=True) if b])
    print(f"controller time / backend apply time: {ratio:.2f}x (median of per-commit ratios)")
    print(f"controller process RSS after {reps + 1} deploys of 1 release: {rss:.0f} MiB")
    print()
    figures = {
        "release": name,
        "reps": reps,
        "cold_start_to_succeeded_s": round(cold, 2),
        "median_s": {k: round(stat(k)[0], 3) for k in rows[0] if col(k)},
        "p95_s": {k: round(stat(k)[1], 3) for k in rows[0] if col(k)},
        "controller_over_backend": round(ratio, 2),
        "controller_rss_mib": round(rss, 1),
        "backend_share_of_commit_to_succeeded": round(stat("backend_apply")[0] / ok_med, 3),
        "topic_action_share_of_commit_to_visible": round(stat("topic_action")[0] / vis_med, 3),
        "per_rep": [{k: (round(v, 3) if v is not None else None) for k, v in r.items()} for r in rows],
    }
    emit_json("commit_to_applied", figures, started)
    return 0


def passes(ctl: ControllerProcess, name: str) -> int:
    """How many passes of ``name`` the controller has finished (the histogram's count)."""
    return int(reconcile_histogram(ctl.metrics()).get(name, (0.0, 0.0))[1])


if __name__ == "__main__":
    sys.exit(main())
