"""A Prometheus server in the stack (Debian's ``prometheus`` package, ``/usr/bin/prometheus``).

It listens on 127.0.0.1 (``PIPECTL_PROMETHEUS_PORT``, default 9090), keeps two hours of samples
in ``.stack/prometheus/data`` and loads the repo's alert rules
(``manifests/platform/monitoring/pipectl-alerts.yaml``) so a real server evaluates them.

What it scrapes (``.stack/prometheus/prometheus.yml``, written by ``prepare``):

- ``job="pipectl"``: the controller's ``/metrics`` at ``127.0.0.1:8700`` (``pipectl run``'s and
  ``make demo``'s default ``--listen``), plus every target listed in a file under
  ``.stack/prometheus/targets/pipectl/`` (``register_target``: a controller on another port). The
  controller wants an API token on ``/metrics``: Prometheus sends the one in
  ``.stack/prometheus/pipectl.token`` (``write_token``; empty until someone writes one, and then
  the scrape is refused and ``up`` is 0);
- ``job="pipectl-jobs"``: targets listed under ``.stack/prometheus/targets/jobs/``. The streaming
  jobs themselves serve no HTTP endpoint (the stack runs Spark with ``spark.ui.enabled false``), so
  nothing is listed there by default; their lag, event freshness and undecodable records reach
  Prometheus through the controller's ``pipectl_streaming_lag_seconds``,
  ``pipectl_event_freshness_seconds`` and ``pipectl_streaming_undecodable_records``
  (``controller.engine.observe``);
- ``job="prometheus"``: itself.

Standard library only, like the rest of ``controller.devstack``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from controller.devstack import probes
from controller.devstack.component import Component
from controller.devstack.install import write_if_changed
from controller.devstack.layout import HOST, Layout, StackError

BINARY = "/usr/bin/prometheus"
SCRAPE_INTERVAL = "5s"
RETENTION = "2h"
CONTROLLER_TARGET = f"{HOST}:8700"
ALERT_RULES = Path("manifests") / "platform" / "monitoring" / "pipectl-alerts.yaml"
TARGET_JOBS = ("pipectl", "jobs")


def prometheus_dir(layout: Layout) -> Path:
    return layout.stack / "prometheus"


def targets_dir(layout: Layout, job: str) -> Path:
    """Where file-based service discovery looks for ``job``'s targets (``pipectl`` or ``jobs``)."""
    if job not in TARGET_JOBS:
        raise StackError(f"no scrape job {job!r}; known: {', '.join(TARGET_JOBS)}")
    return prometheus_dir(layout) / "targets" / job


def register_target(
    layout: Layout, job: str, name: str, address: str, labels: dict[str, str] | None = None
) -> Path:
    """List ``address`` (``host:port``) as a target of ``job`` in its own file ``name.json``;
    Prometheus picks the file up without a restart. Delete the returned file to drop it."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise StackError(f"target file name {name!r}: letters, digits, '.', '_' and '-' only")
    path = targets_dir(layout, job) / f"{name}.json"
    write_if_changed(path, json.dumps([{"targets": [address], "labels": labels or {}}]) + "\n")
    return path


def token_file(layout: Layout) -> Path:
    return prometheus_dir(layout) / "pipectl.token"


def write_token(layout: Layout, token: str) -> Path:
    """Make Prometheus scrape the ``pipectl`` job with this API token (read at every scrape)."""
    path = token_file(layout)
    write_if_changed(path, token.strip() + "\n", mode=0o600)
    return path


def config(layout: Layout) -> dict[str, Any]:
    """The server's configuration (JSON is YAML, so it is written as JSON)."""

    def file_sd(job: str) -> list[dict[str, Any]]:
        return [{"files": [str(targets_dir(layout, job) / "*.json")], "refresh_interval": "30s"}]

    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
            "scrape_timeout": "4s",
        },
        "rule_files": [str(layout.root / ALERT_RULES)],
        "scrape_configs": [
            {
                "job_name": "pipectl",
                "static_configs": [{"targets": [CONTROLLER_TARGET]}],
                "file_sd_configs": file_sd("pipectl"),
                "authorization": {"type": "Bearer", "credentials_file": str(token_file(layout))},
            },
            {"job_name": "pipectl-jobs", "file_sd_configs": file_sd("jobs")},
            {"job_name": "prometheus", "static_configs": [{"targets": ["PROMETHEUS_SELF"]}]},
        ],
    }


class Prometheus(Component):
    name = "prometheus"
    timeout = 60.0

    @property
    def base(self) -> Path:
        return prometheus_dir(self.layout)

    @property
    def config_file(self) -> Path:
        return self.base / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def version(self) -> str:
        try:
            out = subprocess.run(
                [BINARY, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except OSError:
            return ""
        m = re.search(r"prometheus, version (\d+\.\d+\.\d+)", out)
        return m.group(1) if m else ""

    def prepare(self) -> None:
        if not Path(BINARY).is_file():
            raise StackError(f"{BINARY} not found (apt-get install prometheus)")
        for job in TARGET_JOBS:
            targets_dir(self.layout, job).mkdir(parents=True, exist_ok=True)
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        if not token_file(self.layout).exists():
            write_if_changed(token_file(self.layout), "", mode=0o600)
        text = json.dumps(config(self.layout), indent=1).replace("PROMETHEUS_SELF", f"{HOST}:{self.port}")
        write_if_changed(self.config_file, text + "\n")

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [
            BINARY,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.base / 'data'}",
            f"--storage.tsdb.retention.time={RETENTION}",
            "--storage.tsdb.retention.size=256MB",
            f"--web.listen-address={HOST}:{self.port}",
            "--query.max-concurrency=4",
            "--log.level=warn",
        ]
        return argv, self.ctx.base_env(), self.base

    def check(self) -> str:
        status, body = probes.http_json(f"{self.url}/-/ready", timeout=3)
        if status != 200:
            raise probes.ProbeError(f"/-/ready -> {status} {str(body)[:80]}")
        return "ready"

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "config": str(self.config_file), "targets_dir": str(self.base / "targets")}
