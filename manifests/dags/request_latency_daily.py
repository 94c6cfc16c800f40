"""request_latency_daily: rebuild the request-latency models for one ``dt`` partition, in order:
``web.request_latency_hourly`` (from the 1-minute table), then ``web.request_slo_daily`` (from the
hourly model). Two tasks, the second downstream of the first.

Deployed by pipectl like ``host_metrics_daily.py`` (a per-stage copy beside a sidecar holding the
tags, the schedule and how to call pipectl); each task runs ``pipectl transform run request-latency
--stage <stage> --transform <name> --partition <ds>`` as an argv list and returns pipectl's JSON
result as XCom.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pendulum
from airflow import DAG
from airflow.operators.python import PythonOperator

RELEASE = "request-latency"
MODELS = ("web.request_latency_hourly", "web.request_slo_daily")

_FILE = Path(__file__)
_META = _FILE.with_suffix(".pipectl.json")
PIPECTL: dict[str, Any] = json.loads(_META.read_text(encoding="utf-8")) if _META.exists() else {}
DAG_ID = _FILE.stem
STAGE = DAG_ID.split("__", 1)[1] if "__" in DAG_ID else ""
TAGS = list(PIPECTL.get("tags") or ["pipectl", f"release:{RELEASE}"])


def run_model(transform: str, **context: Any) -> dict[str, Any]:
    partition = context["ds"]
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", partition):
        raise ValueError(f"invalid partition {partition!r}: expected yyyy-MM-dd")
    runtime = PIPECTL.get("pipectl") or {}
    if not runtime.get("python") or not runtime.get("repo") or not STAGE:
        raise RuntimeError("deploy this DAG with pipectl: its sidecar says how to call pipectl")
    argv = [
        str(runtime["python"]), "-m", "controller.cli.main", "transform", "run", RELEASE, "--stage", STAGE,
        "--transform", transform, "--partition", partition, "--repo", str(runtime["repo"]),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    print(done.stdout, done.stderr, sep="\n")
    if done.returncode != 0:
        raise RuntimeError(f"pipectl transform run exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {"partition": partition}


with DAG(
    dag_id=DAG_ID,
    description="Hourly and daily request-latency models (pipectl release request-latency)",
    schedule=PIPECTL.get("schedule", "@daily"),  # the manifest's dags[].schedule, via the sidecar
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=TAGS,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    doc_md=__doc__,
) as dag:
    hourly, slo = (
        PythonOperator(task_id=m.split(".")[1], python_callable=run_model, op_kwargs={"transform": m})
        for m in MODELS
    )
    hourly >> slo
