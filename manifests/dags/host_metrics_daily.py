"""host_metrics_daily: refresh the daily host-metrics transform for one ``dt`` partition.

pipectl deploys this file byte for byte per stage as ``host_metrics_daily__<stage>.py`` beside a
``host_metrics_daily__<stage>.pipectl.json`` sidecar (see ``controller.adapters.airflow``): the
dag_id is the file name, the tags (``pipectl``, ``release:…``, ``version:…``) come from the
sidecar, and so do the schedule (the manifest's ``dags[].schedule``) and how to call pipectl
(``pipectl.python``, ``pipectl.repo``).

The task runs ``pipectl transform run host-metrics --stage <stage> --transform
telemetry.host_metrics_daily --partition <ds>`` (an argv list, never a shell string): the
transform is materialized exactly as the controller compiled it for this stage and version
(``transforms/host_metrics_daily.sql``, refs resolved to what the stage serves), and pipectl
refuses to run SQL the controller has not built. Re-running a partition replaces it, so retries
and backfills never append. The task returns pipectl's JSON result (partition, rows, checksum,
…) as XCom for the backfill ledger.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pendulum
from airflow import DAG
from airflow.models.param import Param
from airflow.operators.python import PythonOperator

RELEASE = "host-metrics"
TRANSFORM = "telemetry.host_metrics_daily"
REPO_VERSION = "1.0.0"  # used when the file runs without pipectl's sidecar

_FILE = Path(__file__)
_META = _FILE.with_suffix(".pipectl.json")
PIPECTL: dict[str, Any] = json.loads(_META.read_text(encoding="utf-8")) if _META.exists() else {}
DAG_ID = _FILE.stem
VERSION = str(PIPECTL.get("version") or REPO_VERSION)
TAGS = list(PIPECTL.get("tags") or ["pipectl", f"release:{RELEASE}", f"version:{VERSION}"])
STAGE = DAG_ID.split("__", 1)[1] if "__" in DAG_ID else ""

_PARTITION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def materialize(**context: Any) -> dict[str, Any]:
    params = dict(context["params"])
    partition = params.get("partition") or context["ds"]
    if not _PARTITION.match(partition):
        raise ValueError(f"invalid partition {partition!r}: expected yyyy-MM-dd")
    runtime = PIPECTL.get("pipectl") or {}
    if not runtime.get("python") or not runtime.get("repo") or not STAGE:
        raise RuntimeError("deploy this DAG with pipectl: its sidecar says how to call pipectl")
    argv = [
        str(runtime["python"]), "-m", "controller.cli.main", "transform", "run", RELEASE,
        "--stage", STAGE, "--transform", TRANSFORM, "--partition", partition, "--repo", str(runtime["repo"]),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=int(params["timeout_s"]), check=False)
    print(done.stdout)
    print(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"pipectl transform run exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"partition": partition}
    result["version"] = VERSION
    return result


with DAG(
    dag_id=DAG_ID,
    description="Daily per-host/metric aggregates from the 1-minute table (pipectl release host-metrics)",
    schedule=PIPECTL.get("schedule", "@daily"),  # the manifest's dags[].schedule, via the sidecar
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=TAGS,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "partition": Param(None, type=["null", "string"], description="dt to build; default: the run's ds"),
        "timeout_s": Param(1800, type="integer"),
    },
    doc_md=__doc__,
) as dag:
    PythonOperator(task_id="materialize_daily", python_callable=materialize)
