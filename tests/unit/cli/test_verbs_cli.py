"""The kubectl-habit verbs: version, wait, get environments, events, logs, suspend/resume, explain,
and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller import __version__
from controller.api.server import ApiServer
from controller.cli.progress import journal_line
from controller.store.db import Store
from controller.store.suspend import suspension
from tests.unit.api.apikit import World as ApiWorld
from tests.unit.cli.clikit import invoke, status, store_with

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "config.yaml"))
    for var in ("PIPECTL_STATE", "PIPECTL_SERVER", "PIPECTL_REPO", "PIPECTL_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def state(tmp_path: Path) -> str:
    return store_with(tmp_path / "s.db", {
        "alpha": status("1.1.0", {"dev": ("1.1.0", "Succeeded"), "prod": ("1.0.0", "Succeeded")}),
    })


@pytest.fixture
def api(repo: Path, tmp_path: Path) -> Iterator[tuple[str, ApiWorld]]:
    """A real API server (uvicorn on a free port) over the API tests' world."""
    w = ApiWorld(repo, tmp_path / "api")
    server = ApiServer("127.0.0.1:0", w.state)
    server.start()
    yield f"http://127.0.0.1:{server.address[1]}", w
    server.stop()
    w.client.close()


def test_version_client_and_server(api: tuple[str, ApiWorld]) -> None:
    r = invoke("version", "--client")
    assert r.exit_code == 0 and r.stdout == f"Client Version: {__version__}\n"
    url, w = api
    r = invoke("version", "--server", url, env={"PIPECTL_TOKEN": w.bob})
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [f"Client Version: {__version__}",
                                     f"Server Version: {__version__} (pipectl.dev/v1alpha1) at {url}"]
    data = json.loads(invoke("version", "--server", url, "-o", "json", env={"PIPECTL_TOKEN": w.bob}).stdout)
    assert data["serverVersion"]["version"] == __version__ and data["clientVersion"]["version"] == __version__
    r = invoke("version", "--server", "http://127.0.0.1:9", env={"PIPECTL_TOKEN": w.bob})
    assert r.exit_code == 1 and r.stdout.startswith("Client Version:") and "cannot reach" in r.stderr
    # the context's controller may be stopped (after `make demo`): the client's version and a note
    assert invoke("config", "set-context", "c", "--server", "http://127.0.0.1:9").exit_code == 0
    r = invoke("version")
    assert r.exit_code == 0 and "no controller answers at http://127.0.0.1:9" in r.stderr


def test_wait_met_and_timing_out(state: str) -> None:
    r = invoke("wait", "release", "alpha", "--for", "stage=prod", "--state", state)
    assert r.exit_code == 0 and r.stdout == "pipelinerelease/alpha condition met: stage prod Succeeded\n"
    r = invoke("wait", "release", "alpha", "--for", "stage=prod,version=1.0.0", "--state", state)
    assert r.exit_code == 0
    assert invoke("wait", "release", "alpha", "--for", "condition=Ready", "--state", state).exit_code == 0
    started = time.monotonic()
    r = invoke("wait", "release", "alpha", "--for", "stage=prod,version=1.1.0", "--timeout", "1s",
               "--interval", "0.2s", "--state", state)
    assert 1.0 <= time.monotonic() - started < 10
    assert r.exit_code == 1
    assert ("error: timed out after 1s waiting for release alpha: stage prod Succeeded, version 1.1.0; "
            "it shows 1.1.0 Succeeded, Ready=True (ReconciliationSucceeded); dev 1.1.0 Succeeded, "
            "prod 1.0.0 Succeeded") in r.stderr
    r = invoke("wait", "release", "ghost", "--for", "phase=Succeeded", "--timeout", "0s", "--state", state)
    assert r.exit_code == 1 and "the release has no status yet" in r.stderr
    for bad in ("stage", "colour=red", "stage=prod,stage=dev", ""):
        r = invoke("wait", "release", "alpha", "--for", bad, "--state", state)
        assert r.exit_code == 2 and "--for" in r.stderr, bad


def test_wait_sees_a_change(state: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import controller.cli.get as get

    polled, read = threading.Event(), get.statuses

    def statuses(*args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)
        finally:
            polled.set()

    monkeypatch.setattr(get, "statuses", statuses)

    def promote() -> None:  # after the command's first poll, not after a guess at its start-up time
        assert polled.wait(20)
        Store(state).put_status("alpha", status("1.1.0", {"prod": ("1.1.0", "Succeeded")}))

    t = threading.Thread(target=promote)
    t.start()
    r = invoke("wait", "release", "alpha", "--for", "stage=prod,version=1.1.0", "--timeout", "20s",
               "--interval", "0.2s", "--state", state)
    t.join()
    assert r.exit_code == 0, r.output
    assert "waiting for alpha: stage prod Succeeded, version 1.1.0; now 1.1.0" in r.stderr  # progress lines


def test_get_environments(repo: Path, tmp_path: Path) -> None:
    r = invoke("get", "environments", "--repo", str(repo), "--state", f"sqlite:///{tmp_path}/s.db")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROMOTION", "CANARY-OF", "APPROVERS", "KAFKA", "HIVE", "AIRFLOW"]
    assert [line.split()[0] for line in lines[1:]] == ["canary", "dev", "prod", "staging"]
    assert lines[1].split()[:3] == ["canary", "automatic", "prod"]
    r = invoke("get", "env", "prod", "--repo", str(repo), "-o", "json", "--state", f"sqlite:///{tmp_path}/s.db")
    assert json.loads(r.stdout)["spec"]["promotion"] == "approval"
    r = invoke("get", "env", "qa", "--repo", str(repo), "--state", f"sqlite:///{tmp_path}/s.db")
    assert r.exit_code == 1 and 'environment "qa" not found' in r.stderr


def test_events(state: str) -> None:
    store = Store(state)
    store.put_status("beta", status("1.0.0", {}))
    store.add_event("alpha", "dev", "Normal", "Progressing", "deploying 1.1.0")
    store.add_event("beta", None, "Warning", "GateFailed", "gate x failed")
    store.add_event("alpha", "prod", "Normal", "ReconciliationSucceeded", "done")
    r = invoke("events", "--state", state)
    assert r.exit_code == 0
    rows = [line.split()[2] for line in r.stdout.splitlines()[1:]]
    assert rows == ["Progressing", "GateFailed", "ReconciliationSucceeded"]  # oldest first, every release
    r = invoke("events", "alpha", "--state", state, "-o", "json")
    assert [e["reason"] for e in json.loads(r.stdout)["items"]] == ["Progressing", "ReconciliationSucceeded"]
    r = invoke("events", "--types", "Warning", "--state", state, "-o", "jsonpath={.items[*].release}")
    assert r.stdout == "beta\n"
    assert invoke("events", "ghost", "--state", state).exit_code == 1


def test_events_through_the_api(api: tuple[str, ApiWorld]) -> None:
    url, w = api
    w.store.add_event("host-metrics", "dev", "Normal", "Progressing", "deploying")
    r = invoke("events", "--server", url, env={"PIPECTL_TOKEN": w.bob})
    assert r.exit_code == 0 and "pipelinerelease/host-metrics (dev)" in r.stdout


def _job(jobs: Path, name: str, version: str, log: str, started: datetime) -> None:
    run = jobs / name
    run.mkdir(parents=True)
    (run / "driver.log").write_text(log)
    record: dict[str, object] = {
        "name": name, "version": version, "entrypoint": "jobs/agg.py", "entrypoint_digest": "sha256:x",
        "args": [], "conf": {}, "checkpoint": "/c", "effective_checkpoint": "/c", "strategy": "blueGreen",
        "owner": {"release": "alpha", "version": version}, "argv": [], "pid": None,
        "started_at": started.isoformat(), "stopped_at": started.isoformat(),
        "status_file": str(run / "status.json"), "stop_file": str(run / "stop"),
        "log_file": str(run / "driver.log"),
    }
    (jobs / f"{name}.json").write_text(json.dumps(record))


def test_logs_from_the_spark_registry(state: str, tmp_path: Path) -> None:
    jobs = tmp_path / "spark" / "jobs"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    _job(jobs, "dev-alpha-agg-v1-0-0", "1.0.0", "old\n", t0)
    _job(jobs, "dev-alpha-agg-v1-1-0", "1.1.0", "line 1\nline 2\nline 3\n", t0 + timedelta(hours=1))
    _job(jobs, "prod-alpha-agg-v1-0-0", "1.0.0", "prod\n", t0)
    r = invoke("logs", "agg", "--stage", "dev", "--state", state)
    assert r.exit_code == 0, r.output
    assert r.stdout == "line 1\nline 2\nline 3\n"  # the version dev runs now
    assert "dev-alpha-agg-v1-1-0 1.1.0 (stopped" in r.stderr and "also: dev-alpha-agg-v1-0-0" in r.stderr
    assert invoke("logs", "agg", "--stage", "dev", "--tail", "1", "--state", state).stdout == "line 3\n"
    assert invoke("logs", "dev-alpha-agg-v1-0-0", "--stage", "dev", "--state", state).stdout == "old\n"
    assert invoke("logs", "agg", "--stage", "prod", "--state", state).stdout == "prod\n"
    r = invoke("logs", "nope", "--stage", "dev", "--state", state)
    assert r.exit_code == 1 and "no streaming job 'nope' at stage dev" in r.stderr and "dev-alpha-agg" in r.stderr


def test_suspend_and_resume_locally_and_through_the_api(state: str, api: tuple[str, ApiWorld]) -> None:
    r = invoke("suspend", "alpha", "--reason", "freeze", "--state", state)
    assert r.exit_code == 0 and r.stdout == "pipelinerelease/alpha suspended\n"
    held = suspension(Store(state), "alpha")
    assert held is not None and held["by"].startswith("local:") and held["reason"] == "freeze"
    assert "already" in invoke("suspend", "alpha", "--state", state).stdout
    assert invoke("resume", "alpha", "--state", state).stdout == "pipelinerelease/alpha resumed\n"
    assert suspension(Store(state), "alpha") is None
    assert invoke("suspend", "ghost", "--state", state).exit_code == 1

    url, w = api
    r = invoke("suspend", "host-metrics", "--server", url, env={"PIPECTL_TOKEN": w.carol})
    assert r.exit_code == 0, r.output
    assert suspension(w.store, "host-metrics")["by"] == "carol"  # type: ignore[index]
    assert invoke("resume", "host-metrics", "--server", url, env={"PIPECTL_TOKEN": w.carol}).exit_code == 0
    assert suspension(w.store, "host-metrics") is None


def test_explain() -> None:
    r = invoke("explain", "PipelineRelease.spec.rollout.gates")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith("KIND:     PipelineRelease\nVERSION:  pipectl.dev/v1alpha1\n")
    assert "FIELD:    gates <[]Object>" in out and "ONE OF (by type):" in out
    for tag in ("schemaCompatibility", "dataQuality", "streamingHealth", "canaryComparison", "approval"):
        assert f"   type: {tag}" in out
    assert "query\t<string> -required-" in out
    r = invoke("explain", "environment.spec.kafka.securityProtocol")
    assert r.exit_code == 0 and "One of: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL" in r.stdout
    r = invoke("explain", "PipelineRelease.spec.nope")
    assert r.exit_code == 1 and "field 'nope' does not exist in PipelineRelease.spec" in r.stderr


def test_apply_progress_line() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"state": "done", "started_at": since + timedelta(seconds=1), "action": "{}"},
        {"state": "done", "started_at": since - timedelta(seconds=1), "action": "{}"},  # an earlier run
        {"state": "started", "started_at": since + timedelta(seconds=2),
         "action": json.dumps({"op": "create", "kind": "Topic", "name": "dev.x"})},
    ]
    assert journal_line(rows, since) == "1 done; now: create Topic dev.x"


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "_pipectl_completion()"), ("zsh", "#compdef pipectl"), ("fish", "complete --command pipectl"),
])
def test_completion_scripts(shell: str, marker: str) -> None:
    """What `pipectl --install-completion` installs; `_PIPECTL_COMPLETE=source_<shell>` prints it."""
    env = {**os.environ, "_PIPECTL_COMPLETE": f"source_{shell}"}
    r = subprocess.run([sys.executable, "-m", "controller.cli.main"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and marker in r.stdout, r.stderr
    assert "_PIPECTL_COMPLETE=complete_" in r.stdout



def test_completion_completes_verbs() -> None:
    env = {**os.environ, "_PIPECTL_COMPLETE": "complete_bash", "COMP_WORDS": "pipectl ev", "COMP_CWORD": "1"}
    r = subprocess.run([sys.executable, "-m", "controller.cli.main"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.split() == ["events"]


def test_completion_completes_release_names(state: str) -> None:
    env = {**os.environ, "_PIPECTL_COMPLETE": "complete_bash", "COMP_WORDS": "pipectl suspend al",
           "COMP_CWORD": "2", "PIPECTL_STATE": state}
    r = subprocess.run([sys.executable, "-m", "controller.cli.main"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.split() == ["alpha"], r.stderr
