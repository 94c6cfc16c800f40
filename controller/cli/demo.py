"""``make demo``: the example release promoted through dev → staging → canary → prod, then a
defective version caught by the canary gate and rolled back automatically.

Steps (each printed as it happens):

1. reset what an earlier demo left (its streaming jobs, topics, tables, views, DAGs, state);
2. create a local git repo ``demo-work/repo`` from ``manifests/`` and commit host-metrics 1.0.0;
3. start ``pipectl controller run`` on it and one event producer per stage topic;
4. watch the release promote itself; approve prod as ``demo-alice``: the demo's prod Environment
   names her its only approver, ``pipectl token create`` makes her API token, and ``pipectl
   approve --server`` posts the approval with it (the controller records her, the token's principal);
5. commit 1.1.0 whose streaming job drops a quarter of the events, and wake the controller with
   the git webhook; watch the canary comparison fail and the automatic rollback;
6. print ``pipectl get releases`` and ``pipectl describe release host-metrics``; stop the
   controller, the producers and the streaming jobs (the stack stays up).

The state is the default ``.pipectl/state.db`` of this checkout. The demo writes the context
``demo`` (the demo's repo, state and API address, and demo-alice's token) to the client config
(``pipectl config get-contexts``) and makes it current, so afterwards every verb of the README's
tour works as printed, from any directory: ``pipectl get release host-metrics -o json``,
``pipectl backfill host-metrics --stage dev …`` (the demo repo), ``pipectl approve …`` (as alice).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
WORK = ROOT / "demo-work"
REPO = WORK / "repo"
STATE_DIR = ROOT / ".pipectl"
STATE = f"sqlite:///{STATE_DIR / 'state.db'}"
LISTEN = os.environ.get("PIPECTL_DEMO_LISTEN", "127.0.0.1:8700")
WEBHOOK_SECRET = os.environ.get("PIPECTL_WEBHOOK_SECRET") or "demo-webhook-secret"
RELEASE = "host-metrics"
APPROVER = "demo-alice"
RATE = float(os.environ.get("PIPECTL_DEMO_RATE", "40"))
# The local stack's Airflow password (controller.devstack creates the admin user with it; the
# Makefile exports it): pipectl has no default passwords, so the demo sets it for its processes.
os.environ.setdefault("PIPECTL_AIRFLOW_PASSWORD", "admin")
STAGE_TOPICS = {
    "dev": "dev.telemetry.host_metrics",
    "staging": "staging.telemetry.host_metrics",
    "prod": "telemetry.host_metrics",
}
PIPECTL = [sys.executable, "-m", "controller.cli.main"]
ORDER = ("dev", "staging", "canary", "prod")


def write_context(token: str | None) -> None:
    """The context ``demo``, current: verbs find the demo's repo, state and controller by default."""
    from controller.cli.config import ConfigError, Context, config_path, upsert

    ctx = Context(name="demo", server=f"http://{LISTEN}", repo=str(REPO), state=STATE, token=token)
    ctx.written_by = "make demo"
    try:
        cfg = upsert(ctx, make_current=True)
    except (OSError, ConfigError) as e:  # the demo goes on; the tour then needs --repo/--state flags
        say(f"warning: could not write the context demo to {config_path()}: {e}")
        return
    if token is None:
        say(f"context demo written to {cfg.path} and made current (pipectl config get-contexts)")


def say(msg: str) -> None:
    print(f"[demo {datetime.now(UTC).strftime('%H:%M:%S')}] {msg}", flush=True)


def pipectl(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [*PIPECTL, *args, "--state", STATE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"pipectl {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def git(*args: str) -> None:
    subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "-c",
            "user.email=demo@pipectl.local",
            "-c",
            "user.name=pipectl demo",
            *args,
        ],
        check=True,
        capture_output=True,
    )


# --- reset ---------------------------------------------------------------------------------------


def reset() -> None:
    """Remove what an earlier demo run left behind, through pipectl's own adapters."""
    from controller.adapters.hive import HiveAdapter
    from controller.adapters.kafka import KafkaAdapter
    from controller.adapters.presto import PrestoClient
    from controller.adapters.spark import LocalRunner
    from controller.devstack.info import load_stack_info
    from controller.plan.actions import Action, Op
    from controller.plan.resources import ResourceKind
    from controller.wiring import spark_process_env

    pid_file = WORK / "controller.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            time.sleep(3)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
    for pf in WORK.glob("producer-*.pid"):
        try:
            os.killpg(int(pf.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
    registry = STATE_DIR / "spark"
    if registry.exists():
        runner = LocalRunner(registry, ROOT, spark_process_env())
        for name, st in runner.list(None).items():
            if st.alive:
                runner.kill(name)
            runner.forget(name)
    info = load_stack_info()
    kafka = KafkaAdapter(info.get("kafka_bootstrap", "127.0.0.1:9092"))
    live_topics = kafka.observe(ResourceKind.TOPIC, list(STAGE_TOPICS.values()))
    for t in live_topics:
        kafka.apply(Action(op=Op.DELETE, kind=ResourceKind.TOPIC, name=t, reason="demo reset"))
    presto = PrestoClient("127.0.0.1", int(info.get("presto_port", 8080)))
    hive = HiveAdapter("127.0.0.1", int(info.get("thrift_port", 10000)), presto=presto)
    dbs = ["dev_telemetry", "staging_telemetry", "telemetry"]
    for db in hive.observe(ResourceKind.DATABASE, dbs):
        # every relation in the demo's databases goes: views first (they read tables), then tables
        names = [f"{db}.{r[0]}" for r in presto.query(f'SHOW TABLES FROM hive."{db}"')]
        for kind, existing in (
            (ResourceKind.VIEW, list(hive.observe(ResourceKind.VIEW, names))),
            (ResourceKind.TABLE, list(hive.observe(ResourceKind.TABLE, names))),
            (ResourceKind.DATABASE, [db]),
        ):
            for n in existing:
                try:
                    hive.apply(Action(op=Op.DELETE, kind=kind, name=n, reason="demo reset"))
                except Exception as e:  # a leftover we cannot drop is reported, not fatal
                    say(f"reset: could not drop {kind} {n}: {e}")
    dags = Path(info.get("airflow_dags_folder", ""))
    for f in dags.glob("host_metrics_daily__*"):
        f.unlink()
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    shutil.rmtree(WORK, ignore_errors=True)
    kafka.close()


# --- processes -----------------------------------------------------------------------------------


def start_controller() -> subprocess.Popen[bytes]:
    env = {**os.environ, "PIPECTL_WEBHOOK_SECRET": WEBHOOK_SECRET}
    log = (WORK / "controller.log").open("ab")
    proc = subprocess.Popen(
        [
            *PIPECTL,
            "controller",
            "run",
            "--repo",
            str(REPO),
            "--state",
            STATE,
            "--listen",
            LISTEN,
            "--interval",
            "10s",
            "--bake",
            "30s",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (WORK / "controller.pid").write_text(str(proc.pid))
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://{LISTEN}/healthz", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(
                    "controller exited:\n" + (WORK / "controller.log").read_text()[-3000:]
                ) from None
            time.sleep(0.5)
    raise RuntimeError("controller did not answer /healthz")


def start_producer(stage: str, topic: str) -> subprocess.Popen[bytes]:
    log = (WORK / f"producer-{stage}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tools" / "produce_events.py"),
            "--bootstrap-servers",
            "127.0.0.1:9092",
            "--topic",
            topic,
            "--rate",
            str(RATE),
            "--duration",
            "7200",
            "--seed",
            str(sum(map(ord, stage))),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (WORK / f"producer-{stage}.pid").write_text(str(proc.pid))
    return proc


def webhook() -> None:
    req = urllib.request.Request(
        f"http://{LISTEN}/hooks/git",
        data=b'{"ref":"refs/heads/main"}',
        method="POST",
        headers={"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=10)  # noqa: S310 - loopback


# --- watching ------------------------------------------------------------------------------------


def status() -> dict[str, Any]:
    try:
        out = pipectl("get", "release", RELEASE, "-o", "json", check=False)
        data: dict[str, Any] = json.loads(out or "{}")
        return dict(data.get("status", {}))
    except json.JSONDecodeError:
        return {}


def topic_exists(topic: str) -> bool:
    from controller.adapters.kafka import KafkaAdapter
    from controller.plan.resources import ResourceKind

    k = KafkaAdapter("127.0.0.1:9092")
    try:
        return bool(k.observe(ResourceKind.TOPIC, [topic]))
    finally:
        k.close()


def watch(
    until: Callable[[dict[str, Any]], bool],
    timeout: float,
    producers: dict[str, Any],
    ctl: subprocess.Popen[bytes],
    approved: set[str],
    token: str,
) -> dict[str, Any]:
    last = ""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ctl.poll() is not None:
            raise RuntimeError("the controller exited:\n" + (WORK / "controller.log").read_text()[-3000:])
        st = status()
        for stage, topic in STAGE_TOPICS.items():
            if stage not in producers and topic_exists(topic):
                say(f"topic {topic} exists: starting an event producer at {RATE:g} events/s")
                producers[stage] = start_producer(stage, topic)
        stages = st.get("stages", {})
        line = " | ".join(
            f"{s}: {x.get('version') or '-'} {x.get('phase')}"
            + (f" ({x.get('reason')})" if x.get("reason") else "")
            for s in ORDER
            if (x := stages.get(s))
        )
        if line and line != last:
            say(line)
            last = line
        if until(st):
            return st
        prod = st.get("stages", {}).get("prod", {})
        version = str(st.get("version"))
        if prod.get("reason") == "AwaitingApproval" and version not in approved:
            say(f"prod awaits approval: {APPROVER} runs pipectl approve {RELEASE} --stage prod --server http://{LISTEN}")
            out = pipectl("approve", RELEASE, "--stage", "prod", "--version", version, "--server", f"http://{LISTEN}",
                          env={"PIPECTL_TOKEN": token})
            say(out.strip())
            approved.add(version)
        time.sleep(3)
    raise RuntimeError(f"timed out after {timeout:.0f}s; last status: {json.dumps(st)[:2000]}")


def stage_is(st: dict[str, Any], stage: str, version: str, phase: str) -> bool:
    x = st.get("stages", {}).get(stage, {})
    return bool(x.get("version") == version and x.get("phase") == phase)


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    started = time.time()
    say("resetting what an earlier demo left behind")
    reset()
    WORK.mkdir(parents=True)
    say(f"creating the GitOps repo {REPO.relative_to(ROOT)} from manifests/")
    # host-metrics only: the second example (request-latency) has its own test
    # (tests/integration/test_second_pipeline.py) and would double the demo's Spark jobs.
    shutil.copytree(
        ROOT / "manifests", REPO,
        ignore=shutil.ignore_patterns("platform", "__pycache__", "request-latency.yaml"),
    )
    prod = REPO / "environments" / "prod.yaml"
    prod.write_text(prod.read_text().rstrip("\n") + f"\n  approvers: {{users: [{APPROVER}]}}\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(REPO)], check=True)
    git("add", "-A")
    git("commit", "-qm", "host-metrics 1.0.0")
    write_context(None)
    say("committed host-metrics 1.0.0; starting the controller")
    ctl = start_controller()
    token = pipectl("token", "create", "--user", APPROVER).strip()
    write_context(token)
    say(f"created an API token for {APPROVER}, prod's only approver (pipectl token create --user "
        f"{APPROVER}); the context demo uses it")
    producers: dict[str, Any] = {}
    approved: set[str] = set()
    try:
        t0 = time.time()
        watch(lambda st: stage_is(st, "prod", "1.0.0", "Succeeded"), 30 * 60, producers, ctl, approved, token)
        say(f"1.0.0 is live in all four stages ({time.time() - t0:.0f}s)")

        job = REPO / "jobs" / "host_metrics_agg.py"
        code = job.read_text()
        code, n = re.subn(r'("--drop-fraction", type=fraction, default=)0\.0', r"\g<1>0.25", code)
        if n != 1:
            raise RuntimeError("could not plant the demo defect in the streaming job")
        job.write_text(code)
        rel = REPO / "releases" / "host-metrics.yaml"
        rel.write_text(rel.read_text().replace("version: 1.0.0", "version: 1.1.0", 1))
        git("commit", "-qam", "host-metrics 1.1.0 (defect: the job drops 25% of events)")
        say("committed host-metrics 1.1.0 with a defect (the job drops 25% of events); sending the webhook")
        webhook()
        t1 = time.time()
        rolled_back = lambda st: stage_is(st, "canary", "1.1.0", "RolledBack")  # noqa: E731
        watch(rolled_back, 30 * 60, producers, ctl, approved, token)
        say(f"the canary gate caught 1.1.0 and pipectl rolled it back ({time.time() - t1:.0f}s)")
        watch(lambda st: stage_is(st, "prod", "1.0.0", "Succeeded"), 120, producers, ctl, approved, token)
    finally:
        say("stopping the controller and the producers")
        for p in producers.values():
            p.send_signal(signal.SIGTERM)
        ctl.send_signal(signal.SIGTERM)
        try:
            ctl.wait(timeout=120)
        except subprocess.TimeoutExpired:
            ctl.kill()
    print()
    print("$ pipectl get releases")
    print(pipectl("get", "releases", "-o", "wide"))
    print("$ pipectl describe release host-metrics")
    print(pipectl("describe", "release", RELEASE))
    print("$ pipectl history host-metrics")
    print(pipectl("history", RELEASE))
    stop_jobs()
    say(
        f"demo finished in {time.time() - started:.0f}s. The stack is still up; streaming jobs are stopped "
        "(`pipectl controller run --repo demo-work/repo` resumes them)."
    )
    return 0


def stop_jobs() -> None:
    from controller.adapters.spark import LocalRunner
    from controller.wiring import spark_process_env

    runner = LocalRunner(STATE_DIR / "spark", ROOT, spark_process_env())
    for name, st in runner.list(None).items():
        if st.alive:
            runner.stop(name, timeout=60)


if __name__ == "__main__":
    sys.exit(main())
