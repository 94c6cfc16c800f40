"""Rollback MTTR on the real stack: the failing gate verdict → the serving view back on the known
good, and → the stage RolledBack.

What it does, against the local stack (127.0.0.1 only):

1. writes a temporary git repo: one ``prod`` environment under a unique prefix and one release made
   of the example streaming job (``manifests/jobs/host_metrics_agg.py``, blueGreen, with the
   example schema), a topic with a config, a table per version for the job, a small ``flags``
   table, a serving view and an Airflow DAG; gates: aggregates present before promotion, and a
   ``postPromotion`` dataQuality gate ``SELECT count(*) FROM mttr.flags WHERE v = '<version>'``
   expecting 0 (``rollout.analysis.bake: 30m``);
2. starts a real ``pipectl controller run`` (``--interval 5s --bake 20m``: blue keeps running
   through the bake, as in production, so the view's way back is a pointer change) and the
   example producer at 20 events/s; 1.0.0 is promoted (the known good);
3. ``ROUNDS`` times: commits 1.k.0, which changes the topic's ``retention.ms`` and (with the
   version) the DAG's version tag; waits until it is promoted and the serving view reads its table
   (``SHOW CREATE VIEW`` through Presto); then writes the row ``flags.v = '1.k.0'`` through the
   Spark Thrift Server, so the post-promotion gate fails on the controller's next look and the
   controller rolls prod back to 1.0.0 (view segments, job, DAG, topic config);
4. meanwhile polls Presto's ``SHOW CREATE VIEW`` (back to back on 4 threads started 0.4 s apart)
   and the state store's status (every 0.1 s), and reads the rollback's audit record and the
   restore's journal afterwards.

Measured per round, from the failing verdict — the rollback record's ``started_at``, which the
controller takes right after the gates were evaluated, when the stage enters rollback (a
post-promotion failure emits no separate gate event before it; its ``gate`` record is written
after the restore's first attempt):

- → serving view on the known good: the earliest end of a ``SHOW CREATE VIEW`` that read only
  1.0.0's table (an upper bound); ``view_resolution_s`` is how much later that is than the lower
  bound (the latest start of a poll that still read 1.k.0's, or the verdict);
- → stage RolledBack: the stage's ``lastTransitionTime`` into RolledBack (controller clock), and
  when the status poll first saw it;
- also: flag row written → failing verdict (detection: the controller's next post-promotion look).

Fails with exit 1 when a round did not measure what it names: no promotion of 1.k.0, the view
never read 1.k.0 before the verdict, no rollback (or not a post-promotion one, or not RolledBack),
the view never came back to 1.0.0. Exit 2: the stack is unhealthy.

Prints a table per round, median and max, writes ``bench/results/rollback_mttr.json`` and ends
with the JSON line of ``emit_json``.

Run: ``.venv/bin/python bench/bench_rollback_mttr.py [--rounds 3]`` (~4 min per round here, plus ~4
min for 1.0.0; Spark jobs on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from _common import (
    DAG_SOURCE,
    HIVE_HOST,
    HIVE_PORT,
    KAFKA,
    PY,
    ROOT,
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
    render_table,
    say,
    sqlite_rows,
    stack_info,
    topic_config,
)

RESULTS = Path(__file__).resolve().parent / "results" / "rollback_mttr.json"
STAGE = "prod"
GOOD = "1.0.0"
RATE = 20
PROMOTE_TIMEOUT = 900.0
ROLLBACK_TIMEOUT = 600.0


def retention(version: str) -> str:
    return str(86_400_000 + 3_600_000 * int(version.split(".")[1]))


def vtable(version: str) -> str:
    return "agg_1m__v" + version.replace(".", "_")


def release_yaml(name: str, dag: str, version: str) -> str:
    doc = {
        "apiVersion": "pipectl.dev/v1alpha1",
        "kind": "PipelineRelease",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "schemas": [
                {
                    "name": "host-metric-event",
                    "format": "avro",
                    "path": "schemas/host_metric_event.avsc",
                    "compatibility": "BACKWARD",
                }
            ],
            "topics": [
                {
                    "name": "mttr.events",
                    "partitions": 2,
                    "replicationFactor": 1,
                    "config": {"retention.ms": retention(version)},
                    "valueSchema": "host-metric-event",
                }
            ],
            "tables": [
                {
                    "name": "mttr.agg_1m",
                    "columns": [
                        {"name": "host", "type": "string"},
                        {"name": "metric", "type": "string"},
                        {"name": "window_start", "type": "timestamp"},
                        {"name": "samples", "type": "bigint"},
                        {"name": "avg_value", "type": "double"},
                        {"name": "max_value", "type": "double"},
                    ],
                    "partitionedBy": [{"name": "dt", "type": "string"}],
                },
                {"name": "mttr.flags", "columns": [{"name": "v", "type": "string"}]},
            ],
            "views": [{"name": "mttr.agg", "table": "mttr.agg_1m"}],
            "streamingJobs": [
                {
                    "name": "agg",
                    "entrypoint": "jobs/host_metrics_agg.py",
                    "sources": [{"topic": "mttr.events", "startingOffsets": "earliest"}],
                    "sinks": [{"table": "mttr.agg_1m"}],
                    "trigger": "10s",
                    "strategy": "blueGreen",
                    "replayWindow": "1m",
                    "conf": {"spark.sql.shuffle.partitions": "2"},
                }
            ],
            "dags": [{"id": dag, "path": "dags/mttr.py"}],
            "rollout": {
                "stages": [STAGE],
                "gates": [
                    {
                        "name": "aggregates-present",
                        "type": "dataQuality",
                        "query": "SELECT count(*) FROM mttr.agg_1m",
                        "expect": "> 0",
                    },
                    {
                        "name": "not-flagged",
                        "type": "dataQuality",
                        "query": f"SELECT count(*) FROM mttr.flags WHERE v = '{version}'",
                        "expect": "== 0",
                        "postPromotion": True,
                    },
                ],
                "analysis": {"bake": "30m"},
                "rollback": {"automatic": True},
            },
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


class Failed(Exception):
    """The benchmark did not measure what it names."""


@dataclass
class ViewPoll:
    """``SHOW CREATE VIEW`` back to back on ``THREADS`` threads started a little apart (one query
    takes ~1-4 s here, so one thread alone would resolve the switch to no better than that):
    (start, end, tables read or error)."""

    view: str
    threads: int = 4
    seen: list[tuple[float, float, frozenset[str] | str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, delay: float) -> None:
        from pyhive import presto

        self.stop.wait(delay)
        cur = None
        while not self.stop.is_set():
            t0 = time.time()
            try:
                if cur is None:
                    cur = presto.connect(
                        host="127.0.0.1", port=8080, catalog="hive", username="pipectl-bench"
                    ).cursor()
                cur.execute(f"SHOW CREATE VIEW {self.view}")
                sql = str(cur.fetchall()[0][0])
                tables = frozenset(re.findall(r"agg_1m__v[0-9_]+", sql))
                self.seen.append((t0, time.time(), tables))
            except Exception as e:  # recorded; a poll error is not a result
                self.seen.append((t0, time.time(), f"{type(e).__name__}: {e}"))
                cur = None
                time.sleep(0.5)
            time.sleep(0.05)

    def start(self) -> list[threading.Thread]:
        out = []
        for i in range(self.threads):
            t = threading.Thread(target=self.run, args=(0.4 * i,), daemon=True, name=f"view-poll-{i}")
            t.start()
            out.append(t)
        return out

    def reads_only(self, version: str, after: float) -> tuple[float, float] | None:
        """When the view came to read only ``version``'s table, after ``after``, as (upper, lower)
        bounds: a poll that read it ended after the switch (the earliest such end is the upper
        bound); a poll that still read something else started before it (the latest such start
        after ``after`` is the lower bound, else ``after``). None if no poll read it."""
        want = frozenset({vtable(version)})
        polls = [(t0, t1, res) for t0, t1, res in list(self.seen) if not isinstance(res, str)]
        ends = [t1 for t0, t1, res in polls if res == want and t1 > after]
        if not ends:
            return None
        upper = min(ends)
        starts = [t0 for t0, _t1, res in polls if res != want and after <= t0 < upper]
        return upper, max(starts, default=after)


def stage_status(state: Path, name: str) -> dict[str, Any]:
    rows = sqlite_rows(state, "SELECT status FROM releases WHERE name = ?", (name,)) if state.exists() else []
    return dict(json.loads(rows[0][0]).get("stages", {}).get(STAGE, {})) if rows else {}


def view_reads(view: str) -> frozenset[str]:
    from pyhive import presto

    cur = presto.connect(host="127.0.0.1", port=8080, catalog="hive", username="pipectl-bench").cursor()
    cur.execute(f"SHOW CREATE VIEW {view}")
    return frozenset(re.findall(r"agg_1m__v[0-9_]+", str(cur.fetchall()[0][0])))


def hive_exec(sql: str) -> None:
    from pyhive import hive

    con = hive.connect(HIVE_HOST, HIVE_PORT, auth="NOSASL")
    try:
        con.cursor().execute(sql)
    finally:
        con.close()


def audit_records(state: Path, name: str) -> list[dict[str, Any]]:
    r = subprocess.run(
        [PY, "-m", "controller.cli.main", "audit", name, "--state", f"sqlite:///{state}", "-o", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        raise Failed(f"pipectl audit failed: {r.stderr.strip()}")
    data = json.loads(r.stdout)
    return list(data.get("items", data) if isinstance(data, dict) else data)


def wait_promoted(state: Path, name: str, version: str, view: str, ctl: ControllerProcess) -> float:
    """Until ``version`` is Succeeded at prod and the serving view reads its table; the time taken."""
    t0 = time.time()
    while time.time() - t0 < PROMOTE_TIMEOUT:
        if ctl.proc is not None and ctl.proc.poll() is not None:
            raise Failed("the controller exited:\n" + ctl.log.read_text()[-3000:])
        st = stage_status(state, name)
        if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack", "RollbackFailed"):
            raise Failed(
                f"{version} was not promoted: {st.get('phase')} {st.get('reason')}: {st.get('message')}"
            )
        if st.get("version") == version and st.get("phase") == "Succeeded":
            try:
                if vtable(version) in view_reads(view):
                    return time.time() - t0
            except Exception as e:
                say(f"view poll: {e}")
        time.sleep(1.0)
    raise Failed(f"{version} not promoted with its view switched within {PROMOTE_TIMEOUT:.0f}s")


def one_round(
    k: int, state: Path, name: str, dag: str, repo: Path, ctl: ControllerProcess, view: str, topic: str
) -> dict[str, Any]:
    version = f"1.{k}.0"
    (repo / "releases" / "mttr.yaml").write_text(release_yaml(name, dag, version))
    git_commit(repo, f"{version}: retention {retention(version)}")
    t_commit = ctl.webhook()
    took = wait_promoted(state, name, version, view, ctl)
    reads = view_reads(view)
    say(f"round {k}: {version} promoted, view reads {sorted(reads)} ({took:.0f}s after the commit)")
    if topic_config(kafka_admin(), topic, "retention.ms") != retention(version):
        raise Failed(f"{version}'s topic config is not live at prod: nothing for the rollback to restore")

    poll = ViewPoll(view)
    threads = poll.start()
    try:
        t_flag0 = time.time()
        hive_exec(f"INSERT INTO `{name_db(view)}`.`flags` VALUES ('{version}')")
        t_flag = time.time()
        say(
            f"round {k}: flagged {version} ({t_flag - t_flag0:.1f}s for the INSERT); waiting for the rollback"
        )
        t_seen_rb = None
        deadline = time.time() + ROLLBACK_TIMEOUT
        while time.time() < deadline:
            st = stage_status(state, name)
            if st.get("version") == version and st.get("phase") in ("Failed", "RollbackFailed"):
                raise Failed(f"round {k}: {version} ended {st.get('phase')}: {st.get('message')}")
            if st.get("version") == version and st.get("phase") == "RolledBack":
                t_seen_rb = time.time()
                break
            time.sleep(0.1)
        if t_seen_rb is None:
            raise Failed(f"round {k}: no rollback of {version} within {ROLLBACK_TIMEOUT:.0f}s after the flag")
        # the view: polled until it reads the known good only (or a while after RolledBack)
        while poll.reads_only(GOOD, t_flag0) is None and time.time() < t_seen_rb + 60:
            time.sleep(0.2)
    finally:
        poll.stop.set()
        for t in threads:
            t.join(timeout=30)
    st = stage_status(state, name)
    rb = [
        r
        for r in audit_records(state, name)
        if r["kind"] == "rollback" and r.get("stage") == STAGE and r.get("version") == version
    ]
    if len(rb) != 1 or rb[0]["outcome"] != "rolledBack":
        raise Failed(
            f"round {k}: rollback records of {version}: {[(r['outcome'], r['message']) for r in rb]}"
        )
    rec = rb[0]
    if "post-promotion gate not-flagged failed" not in rec["message"]:
        raise Failed(f"round {k}: the rollback was not the post-promotion gate's: {rec['message']}")
    t_verdict = parse_ts(rec["started_at"])
    if not t_flag0 <= t_verdict:
        raise Failed(f"round {k}: the rollback started before the flag was written")
    before = [
        res
        for _t0, t1, res in sorted(poll.seen, key=lambda x: x[1])
        if t1 <= t_verdict and not isinstance(res, str)
    ]
    if not before or vtable(version) not in before[-1]:
        raise Failed(f"round {k}: the view was not seen reading {version} before the verdict: {before[-1:]}")
    back = poll.reads_only(GOOD, t_verdict)
    if back is None:
        raise Failed(f"round {k}: the view never read only {GOOD}'s table again: {poll.seen[-3:]}")
    t_view, t_prev = back
    t_rb = (
        parse_ts(st["lastTransitionTime"]) if st.get("lastTransitionTime") else parse_ts(rec["finished_at"])
    )
    errors = [res for _t0, _t1, res in poll.seen if isinstance(res, str)]
    details = rec.get("details") or {}
    row = {
        "round": k,
        "version": version,
        "commit_to_promoted_s": round(took, 1),
        "flag_to_verdict_s": round(t_verdict - t_flag, 2),
        "verdict_to_view_restored_s": round(t_view - t_verdict, 2),
        "view_resolution_s": round(t_view - t_prev, 2),
        "verdict_to_rolled_back_s": round(t_rb - t_verdict, 2),
        "verdict_to_rolled_back_seen_s": round(t_seen_rb - t_verdict, 2),
        "verdict_to_rollback_record_s": round(parse_ts(rec["finished_at"]) - t_verdict, 2),
        "view_polls": len(poll.seen),
        "view_poll_errors": len(errors),
        "restore_actions": restore_actions(state, name, t_verdict, t_rb),
        "restored_items": sorted(f"{i.get('kind')}:{i.get('name')}" for i in details.get("restored", [])),
        "commit_time": t_commit,
    }
    if topic_config(kafka_admin(), topic, "retention.ms") != retention(GOOD):
        raise Failed(f"round {k}: RolledBack but the topic config is not {GOOD}'s")
    for a in row["restore_actions"]:
        say(f"round {k}:   restore {a['action']:28} {a['state']:8} {a['start_s']:6.2f}s → {a['end_s']}s")
    say(
        f"round {k}: verdict → view on {GOOD} {row['verdict_to_view_restored_s']:.2f}s "
        f"(±{row['view_resolution_s']:.2f}), → RolledBack {row['verdict_to_rolled_back_s']:.2f}s "
        f"(seen {row['verdict_to_rolled_back_seen_s']:.2f}s); flag → verdict {row['flag_to_verdict_s']:.1f}s"
    )
    return row


def restore_actions(state: Path, name: str, t_verdict: float, t_end: float) -> list[dict[str, Any]]:
    """The journaled actions of the restore's converge runs (``runs.kind = 'restore'``) between the
    verdict and the end: kind/op, state, start and finish in seconds after the verdict."""
    out = []
    for run_id, started in sqlite_rows(
        state, "SELECT run_id, started_at FROM runs WHERE release = ? AND kind = 'restore'", (name,)
    ):
        if not t_verdict - 1 <= parse_ts(started) <= t_end + 1:
            continue
        for action, st, t0, t1 in sqlite_rows(
            state, "SELECT action_id, state, started_at, finished_at FROM journal WHERE run_id = ?", (run_id,)
        ):
            parts = str(action).split("/")
            out.append(
                {
                    "action": f"{parts[0]}/{parts[-1]}",
                    "state": st,
                    "start_s": round(parse_ts(t0) - t_verdict, 2),
                    "end_s": round(parse_ts(t1) - t_verdict, 2) if t1 else None,
                }
            )
    return sorted(out, key=lambda a: a["start_s"])


def name_db(view: str) -> str:
    return view.split('"')[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    install_sigterm()
    started = machine()
    say(f"machine: {started['cpus']} cpu(s) {started['cpu_model']}, load {started['loadavg']}")
    info = stack_info()
    uid = new_uid("rb")
    tmp = Path(tempfile.mkdtemp(prefix=f"pipectl-{uid}-"))
    say(f"prefix {uid}; work dir {tmp}")
    name, dag = f"mttr-{uid}", f"{uid}_mttr"
    topic, view = f"{uid}.mttr.events", f'hive."{uid}_mttr"."agg"'
    state = tmp / "state" / "state.db"
    ctl: ControllerProcess | None = None
    producer: subprocess.Popen[bytes] | None = None
    try:
        repo = tmp / "repo"
        files = {
            "environments/prod.yaml": env_yaml(uid, info["airflow_dags_folder"], STAGE),
            "releases/mttr.yaml": release_yaml(name, dag, GOOD),
            "dags/mttr.py": DAG_SOURCE,
            "jobs/host_metrics_agg.py": (ROOT / "manifests" / "jobs" / "host_metrics_agg.py").read_text(),
            "schemas/host_metric_event.avsc": (
                ROOT / "manifests" / "schemas" / "host_metric_event.avsc"
            ).read_text(),
        }
        for rel, text in files.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        git_init(repo)
        ctl = ControllerProcess(
            repo, state, tmp / "controller.log", interval="5s", extra_args=["--bake", "20m"]
        )
        t0 = time.time()
        ctl.start()
        admin = kafka_admin()
        while topic not in admin.list_topics(timeout=10).topics:
            if time.time() - t0 > 180:
                raise Failed("the stage topic was not created")
            time.sleep(1.0)
        with (tmp / "producer.log").open("ab") as out:
            producer = subprocess.Popen(
                [
                    PY,
                    str(ROOT / "manifests" / "tools" / "produce_events.py"),
                    "--bootstrap-servers",
                    KAFKA,
                    "--topic",
                    topic,
                    "--rate",
                    str(RATE),
                    "--duration",
                    "7200",
                    "--seed",
                    "3",
                    "--hosts",
                    "10",
                    "--metrics",
                    "4",
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        took = wait_promoted(state, name, GOOD, view, ctl)
        say(f"{GOOD} promoted at {STAGE} ({time.time() - t0:.0f}s after the controller started)")
        rows = [one_round(k, state, name, dag, repo, ctl, view, topic) for k in range(1, args.rounds + 1)]
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        if ctl is not None:
            print(ctl.log.read_text(errors="replace")[-2000:], file=sys.stderr)
        return 1
    finally:
        if producer is not None and producer.poll() is None:
            os.killpg(producer.pid, signal.SIGTERM)
        if ctl is not None:
            ctl.stop()
        stop_jobs(state.parent, tmp / "repo")
        for p in cleanup(uid, [f"{dag}__{STAGE}"], info["airflow_dags_folder"]):
            say(f"cleanup problem: {p}")
        shutil.rmtree(tmp, ignore_errors=True)
    return report(rows, took, started)


def stop_jobs(state_dir: Path, repo: Path) -> None:
    from _streaming import spark_env

    from controller.adapters.spark import LocalRunner

    if not (state_dir / "spark" / "jobs").exists():
        return
    runner = LocalRunner(state_dir / "spark", repo, spark_env())
    for job, st in runner.list().items():
        if st.alive:
            try:
                runner.stop(job, timeout=30)
            except Exception:
                runner.kill(job)
    say("cleanup: streaming jobs stopped")


def report(rows: list[dict[str, Any]], first_promotion: float, started: dict[str, Any]) -> int:
    keys = [
        ("verdict → serving view on the known good", "verdict_to_view_restored_s"),
        ("  view poll resolution (upper bound - lower bound)", "view_resolution_s"),
        ("verdict → stage RolledBack (lastTransitionTime)", "verdict_to_rolled_back_s"),
        ("verdict → RolledBack seen by the status poll", "verdict_to_rolled_back_seen_s"),
        ("verdict → rollback audit record written", "verdict_to_rollback_record_s"),
        ("flag row written → failing verdict (detection)", "flag_to_verdict_s"),
        ("commit → promoted, view switched (setup)", "commit_to_promoted_s"),
    ]
    print()
    print(f"Rollback MTTR at the last stage after a post-promotion gate failure, {len(rows)} rounds")
    print(
        render_table(
            ["figure (seconds)", "median", "max", *(f"round {r['round']}" for r in rows)],
            [
                [label, median([r[k] for r in rows]), max(r[k] for r in rows), *(r[k] for r in rows)]
                for label, k in keys
            ],
        )
    )
    by_action: dict[str, list[float]] = {}
    for r in rows:
        for a in r["restore_actions"]:
            if a["end_s"] is not None:
                by_action.setdefault(a["action"], []).append(a["end_s"])
    print()
    print("Restore actions (journal): done, seconds after the verdict")
    print(
        render_table(
            ["action", "median", "max", "count"],
            [
                [k, median(v), max(v), len(v)]
                for k, v in sorted(by_action.items(), key=lambda kv: median(kv[1]))
            ],
        )
    )
    print(f"restored items listed by the rollback record: {rows[-1]['restored_items']}")
    figures = {
        "rounds": len(rows),
        "trigger": "postPromotion dataQuality gate at the last stage (blue/green job, blue still running)",
        "median_s": {k: median([r[k] for r in rows]) for _l, k in keys},
        "max_s": {k: max(r[k] for r in rows) for _l, k in keys},
        "first_promotion_s": round(first_promotion, 1),
        "per_round": [{k: v for k, v in r.items() if k != "commit_time"} for r in rows],
    }
    end = machine()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "bench": "rollback_mttr",
                "measured_at": end["date"],
                **figures,
                "machine": {
                    "cpus": started["cpus"],
                    "cpu_model": started["cpu_model"],
                    "mem_gib": started["mem_gib"],
                    "loadavg_start": started["loadavg"],
                    "loadavg_end": end["loadavg"],
                },
            },
            indent=2,
        )
        + "\n"
    )
    say(f"wrote {RESULTS.relative_to(ROOT)}")
    emit_json("rollback_mttr", figures, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
