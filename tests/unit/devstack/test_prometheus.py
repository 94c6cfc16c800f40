"""The stack's Prometheus server, offline: loopback only, short retention, the repo's alert rules
loaded, the controller and file-discovered targets scraped, ``/-/ready`` as its health probe.
Running for real: tests/integration/test_prometheus.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.devstack import prometheus as prom
from controller.devstack.component import Context
from controller.devstack.components import COMPONENTS
from controller.devstack.layout import Layout, StackError


def _ctx(tmp_path: Path) -> Context:
    return Context(layout=Layout(tmp_path), java_home=Path("/usr"), spark_home=tmp_path, spark_version="3.5.9",
                   python="python3", pg_bin=None)


def test_command_listens_on_loopback_with_short_retention(tmp_path: Path) -> None:
    server = prom.Prometheus(_ctx(tmp_path))
    argv, _env, cwd = server.command()
    assert argv[0] == "/usr/bin/prometheus"
    assert "--web.listen-address=127.0.0.1:9090" in argv
    assert "--storage.tsdb.retention.time=2h" in argv and "--storage.tsdb.retention.size=256MB" in argv
    assert f"--storage.tsdb.path={tmp_path / '.stack' / 'prometheus' / 'data'}" in argv
    assert cwd == tmp_path / ".stack" / "prometheus"
    assert server.info()["url"] == "http://127.0.0.1:9090"
    assert prom.Prometheus in COMPONENTS


def test_port_is_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_PROMETHEUS_PORT", "19090")
    server = prom.Prometheus(_ctx(tmp_path))
    assert "--web.listen-address=127.0.0.1:19090" in server.command()[0]
    assert server.info()["url"] == "http://127.0.0.1:19090"


def test_config_loads_the_alert_rules_and_scrapes_controller_and_targets(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    conf = prom.config(layout)
    assert conf["rule_files"] == [str(tmp_path / "manifests/platform/monitoring/pipectl-alerts.yaml")]
    jobs = {c["job_name"]: c for c in conf["scrape_configs"]}
    assert set(jobs) == {"pipectl", "pipectl-jobs", "prometheus"}
    assert jobs["pipectl"]["static_configs"] == [{"targets": ["127.0.0.1:8700"]}]
    sd = jobs["pipectl"]["file_sd_configs"][0]["files"]
    assert sd == [str(tmp_path / ".stack/prometheus/targets/pipectl/*.json")]
    assert jobs["pipectl-jobs"]["file_sd_configs"][0]["files"] == [
        str(tmp_path / ".stack/prometheus/targets/jobs/*.json")
    ]


def test_prepare_writes_the_config_with_its_own_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prom, "BINARY", "/bin/sh")  # prepare refuses a missing binary
    server = prom.Prometheus(_ctx(tmp_path))
    server.prepare()
    conf = json.loads(server.config_file.read_text())
    own = next(c for c in conf["scrape_configs"] if c["job_name"] == "prometheus")
    assert own["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]
    assert (tmp_path / ".stack/prometheus/targets/jobs").is_dir()


def test_prepare_names_the_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prom, "BINARY", str(tmp_path / "no-prometheus"))
    with pytest.raises(StackError, match="apt-get install prometheus"):
        prom.Prometheus(_ctx(tmp_path)).prepare()


def test_register_target_writes_one_file_sd_file(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    path = prom.register_target(layout, "pipectl", "test-ctl", "127.0.0.1:41234", {"case": "x"})
    assert json.loads(path.read_text()) == [{"targets": ["127.0.0.1:41234"], "labels": {"case": "x"}}]
    assert path.parent == tmp_path / ".stack/prometheus/targets/pipectl"
    with pytest.raises(StackError, match="no scrape job"):
        prom.register_target(layout, "nope", "a", "127.0.0.1:1")
    with pytest.raises(StackError, match="letters, digits"):
        prom.register_target(layout, "jobs", "../evil", "127.0.0.1:1")


def test_the_controller_is_scraped_with_the_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prom, "BINARY", "/bin/sh")
    layout = Layout(tmp_path)
    pipectl = next(c for c in prom.config(layout)["scrape_configs"] if c["job_name"] == "pipectl")
    token = tmp_path / ".stack/prometheus/pipectl.token"
    assert pipectl["authorization"] == {"type": "Bearer", "credentials_file": str(token)}
    prom.Prometheus(_ctx(tmp_path)).prepare()
    assert token.read_text() == "" and token.stat().st_mode & 0o777 == 0o600  # refused until written
    prom.write_token(layout, "secret-token\n")
    assert token.read_text() == "secret-token\n"
