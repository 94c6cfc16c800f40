"""The output formats and verbs the other CLI tests leave out: ``get environments`` in wide, name,
yaml, jsonpath and custom-columns; ``events`` in yaml and custom-columns; ``version -o yaml``;
``config get-contexts -o json|yaml``; ``get releases --watch`` printing a change; and ``wait``
through the API timing out with what the release shows and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller import __version__
from controller.api.server import ApiServer
from controller.store.db import Store
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
    return store_with(tmp_path / "s.db", {"alpha": status("1.0.0", {"dev": ("1.0.0", "Succeeded")})})


@pytest.fixture
def api(repo: Path, tmp_path: Path) -> Iterator[tuple[str, ApiWorld]]:
    w = ApiWorld(repo, tmp_path / "api")
    server = ApiServer("127.0.0.1:0", w.state)
    server.start()
    yield f"http://127.0.0.1:{server.address[1]}", w
    server.stop()
    w.client.close()


def test_get_environments_in_every_format(repo: Path, state: str) -> None:
    def get(*args: str) -> str:
        r = invoke("get", "environments", *args, "--repo", str(repo), "--state", state)
        assert r.exit_code == 0, r.output
        return str(r.stdout)

    wide = get("-o", "wide").splitlines()
    assert wide[0].split()[-4:] == ["PRESTO", "SPARK", "TOPIC-PREFIX", "DB-PREFIX"]
    dev = next(line.split() for line in wide if line.startswith("dev "))
    assert dev[-4:] == ["127.0.0.1:8080", "local[2]", "dev.", "dev_"]
    assert get("-o", "name").split() == ["environment/canary", "environment/dev", "environment/prod",
                                         "environment/staging"]
    doc = yaml.safe_load(get("-o", "yaml"))
    assert doc["kind"] == "EnvironmentList" and [e["metadata"]["name"] for e in doc["items"]][1] == "dev"
    assert get("-o", "jsonpath={.items[?(@.spec.canaryOf)].metadata.name}") == "canary\n"
    assert get("-o", "custom-columns=NAME:.metadata.name,PROMOTION:.spec.promotion").splitlines()[-2:] == [
        "prod      approval", "staging   automatic"]
    r = invoke("get", "environments", "-o", "xml", "--repo", str(repo), "--state", state)
    assert r.exit_code == 2 and 'unknown output format "xml"' in r.stderr


def test_events_yaml_and_custom_columns(state: str) -> None:
    Store(state).add_event("alpha", "dev", "Warning", "GateFailed", "gate x failed")
    r = invoke("events", "alpha", "--state", state, "-o", "yaml")
    assert r.exit_code == 0
    doc = yaml.safe_load(r.stdout)
    assert doc["kind"] == "EventList" and [e["reason"] for e in doc["items"]] == ["GateFailed"]
    r = invoke("events", "--state", state, "-o", "custom-columns=R:.reason,T:.type")
    assert r.exit_code == 0 and r.stdout.splitlines() == ["R            T", "GateFailed   Warning"]
    r = invoke("events", "--state", state, "-o", "name")
    assert r.exit_code == 2 and "use one of table, json, yaml, jsonpath=TEMPLATE, custom-columns=SPEC" in r.stderr


def test_version_yaml_and_contexts_json_yaml(api: tuple[str, ApiWorld]) -> None:
    url, w = api
    r = invoke("version", "--server", url, "-o", "yaml", env={"PIPECTL_TOKEN": w.bob})
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.stdout)
    assert doc["clientVersion"]["version"] == __version__ and doc["serverVersion"]["server"] == url
    assert invoke("version", "-o", "name").exit_code == 2
    assert invoke("config", "set-context", "c", "--server", url).exit_code == 0
    data = json.loads(invoke("config", "get-contexts", "-o", "json").stdout)
    assert data == {"current-context": "c", "contexts": [{"name": "c", "server": url}]}
    assert yaml.safe_load(invoke("config", "get-contexts", "-o", "yaml").stdout) == data


def test_wait_through_the_api_times_out_with_what_it_shows(api: tuple[str, ApiWorld]) -> None:
    url, w = api
    started = time.monotonic()
    r = invoke("wait", "release", "host-metrics", "--for", "stage=prod", "--timeout", "1s", "--interval", "0.2s",
               "--server", url, env={"PIPECTL_TOKEN": w.bob})
    assert 1.0 <= time.monotonic() - started < 10
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.splitlines()[-1] == ("error: timed out after 1s waiting for release host-metrics: "
                                         "stage prod Succeeded; it shows 1.0.0 Succeeded")
    r = invoke("wait", "release", "host-metrics", "--for", "phase=Succeeded", "--server", url,
               env={"PIPECTL_TOKEN": w.bob})
    assert r.exit_code == 0 and r.stdout == "pipelinerelease/host-metrics condition met: phase Succeeded\n"


def test_get_releases_watch_prints_a_change(state: str) -> None:
    env = {**os.environ, "PIPECTL_STATE": state}
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli.main", "get", "releases", "--watch"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)  # a watch that prints nothing must not hang the test
    watchdog.start()
    try:
        assert proc.stdout is not None
        first = [proc.stdout.readline(), proc.stdout.readline()]
        assert first[0].split()[:2] == ["NAME", "VERSION"] and first[1].split()[:2] == ["alpha", "1.0.0"]
        Store(state).put_status("alpha", status("1.1.0", {"dev": ("1.1.0", "Succeeded")}))
        changed = proc.stdout.readline()  # the header is not repeated
        assert changed.split()[:4] == ["alpha", "1.1.0", "dev", "Succeeded"]
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=10)
