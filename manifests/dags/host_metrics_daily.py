"""host_metrics_daily: materialize the daily host-metrics transform for one ``dt`` partition.

pipectl deploys this file byte for byte per stage as ``host_metrics_daily__<stage>.py`` beside a
``host_metrics_daily__<stage>.pipectl.json`` sidecar (see ``controller.adapters.airflow``): the
dag_id is the file name, the tags (``pipectl``, ``release:…``, ``version:…``) come from the
sidecar, and the stage after ``__`` picks the default database prefix (``dev`` -> ``dev_``,
``prod`` -> none). Endpoints are DAG params, so a trigger's conf can override them.

The single task talks to Presto over its HTTP protocol (stdlib only: the Airflow venv has no
pyhive). It renders the transform (``{{ ref('db.table') }}`` -> the stage's table), creates the
target table if missing, overwrites the run's partition (``insert_existing_partitions_behavior =
OVERWRITE``: re-runs and backfills replace, never append), and returns ``{partition, rows,
samples, checksum, version}`` as XCom for the backfill ledger.

The transform is ``transforms/host_metrics_daily.sql``. Its text is also kept below
(``TRANSFORM_SQL``) so the deployed DAG carries the SQL of its own version (only this file is
deployed; a rollback restores both); a unit test keeps the two identical. A sidecar key
``transform_sql`` or the param ``transform_sql_path`` overrides it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
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
DEFAULT_PREFIX = "" if STAGE in ("", "prod") else f"{STAGE}_"

TRANSFORM_SQL = """\
/* telemetry.host_metrics_daily: one row per host, metric and day, from the 1-minute aggregates.
   avg_value is weighted by samples, so it is the mean over every raw event of the day.
   dt (yyyy-MM-dd, UTC) is last: it is the partition column of the materialized table. */
SELECT
    host,
    metric,
    CAST(dt AS date) AS day,
    SUM(samples) AS samples,
    SUM(avg_value * CAST(samples AS double)) / CAST(SUM(samples) AS double) AS avg_value,
    MAX(max_value) AS max_value,
    dt
FROM {{ ref('telemetry.host_metrics_1m') }}
WHERE samples > 0
GROUP BY host, metric, dt
"""

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_PARTITION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REF = re.compile(r"\{\{\s*ref\(\s*'([^']+)'\s*\)\s*\}\}")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"invalid identifier {name!r}")
    return f'"{name}"'


def _table(params: dict[str, Any], logical: str) -> str:
    """``db.table`` of the release -> quoted ``catalog.<prefix>db.table`` of this stage."""
    mapped = (params.get("refs") or {}).get(logical)
    db, table = (mapped or logical).split(".")
    if not mapped:
        db = params["stage_prefix"] + db
    return f"{_ident(params['presto_catalog'])}.{_ident(db)}.{_ident(table)}"


def render(sql: str, params: dict[str, Any]) -> str:
    return _REF.sub(lambda m: _table(params, m.group(1)), sql).strip().rstrip(";")


def _transform_sql(params: dict[str, Any]) -> str:
    if params.get("transform_sql_path"):
        return Path(params["transform_sql_path"]).read_text(encoding="utf-8")
    return str(PIPECTL.get("transform_sql") or TRANSFORM_SQL)


def presto(params: dict[str, Any], sql: str, session: dict[str, str] | None = None) -> list[list[Any]]:
    """Run one statement through Presto's REST protocol; return all rows or raise on error."""
    base = f"http://{params['presto_host']}:{int(params['presto_port'])}"
    headers = {
        "X-Presto-User": params["presto_user"],
        "X-Presto-Catalog": params["presto_catalog"],
        "X-Presto-Source": f"airflow:{DAG_ID}",
        "Content-Type": "text/plain",
    }
    if session:
        headers["X-Presto-Session"] = ",".join(f"{k}={urllib.parse.quote(v)}" for k, v in session.items())
    timeout = float(params["query_timeout_s"])
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(f"{base}/v1/statement", data=sql.encode(), headers=headers, method="POST")
    rows: list[list[Any]] = []
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        doc = json.load(resp)
    while True:
        if doc.get("error"):
            err = doc["error"]
            raise RuntimeError(f"Presto {err.get('errorName')}: {err.get('message')}\n--- SQL:\n{sql}")
        rows.extend(doc.get("data") or [])
        nxt = doc.get("nextUri")
        if not nxt:
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"Presto query did not finish in {timeout}s")
        with urllib.request.urlopen(nxt, timeout=timeout) as resp:
            doc = json.load(resp)


def materialize(**context: Any) -> dict[str, Any]:
    params = dict(context["params"])
    partition = params.get("partition") or context["ds"]
    if not _PARTITION.match(partition):
        raise ValueError(f"invalid partition {partition!r}: expected yyyy-MM-dd")
    select = render(_transform_sql(params), params)
    target = _table(params, TRANSFORM)
    catalog, schema, _ = target.split(".")

    presto(params, f"CREATE SCHEMA IF NOT EXISTS {catalog}.{schema}")
    presto(
        params,
        f"CREATE TABLE IF NOT EXISTS {target} WITH (format = 'PARQUET', partitioned_by = ARRAY['dt']) "
        f"AS SELECT * FROM (\n{select}\n) t WITH NO DATA",
    )
    presto(
        params,
        f"INSERT INTO {target} SELECT * FROM (\n{select}\n) t WHERE t.dt = '{partition}'",
        session={f"{params['presto_catalog']}.insert_existing_partitions_behavior": "OVERWRITE"},
    )
    rows, samples, checksum = presto(
        params,
        "SELECT count(*), coalesce(sum(samples), 0), "
        "coalesce(to_hex(checksum(ROW(host, metric, day, samples, avg_value, max_value))), '') "
        f"FROM {target} WHERE dt = '{partition}'",
    )[0]
    result = {"partition": partition, "rows": rows, "samples": samples, "checksum": checksum,
              "table": target, "version": VERSION}
    print(json.dumps(result))
    return result


with DAG(
    dag_id=DAG_ID,
    description="Daily per-host/metric aggregates from the 1-minute table (pipectl release host-metrics)",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=TAGS,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "stage_prefix": Param(DEFAULT_PREFIX, type="string", description="database prefix of the stage"),
        "refs": Param({}, type="object", description="explicit ref -> db.table mapping (wins over prefix)"),
        "presto_host": Param("127.0.0.1", type="string"),
        "presto_port": Param(8080, type="integer"),
        "presto_catalog": Param("hive", type="string"),
        "presto_user": Param("pipectl", type="string"),
        "partition": Param(None, type=["null", "string"], description="dt to build; default: the run's ds"),
        "transform_sql_path": Param(None, type=["null", "string"]),
        "query_timeout_s": Param(600, type="integer"),
    },
    doc_md=__doc__,
) as dag:
    PythonOperator(task_id="materialize_daily", python_callable=materialize)
