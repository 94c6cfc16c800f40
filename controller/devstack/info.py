"""Read what ``python -m controller.devstack up`` wrote: for pipectl code, tests and the demo.

Standard library only, so anything (a test, an Airflow task, a Spark job) can import it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from controller.devstack.layout import find_repo_root


def stack_json_path(repo_root: Path | None = None) -> Path:
    env = os.environ.get("PIPECTL_STACK_JSON")
    if env and repo_root is None:
        return Path(env)
    return (repo_root or find_repo_root()) / ".stack" / "stack.json"


def load_stack_info(repo_root: Path | None = None) -> dict[str, Any]:
    """The contents of ``.stack/stack.json``; FileNotFoundError when the stack was never started.

    Keys include ``components`` (name -> host, port, pid, state, version, log, ...),
    ``kafka_bootstrap``, ``metastore_uri``, ``thrift_host``/``thrift_port`` (NOSASL),
    ``presto_url``/``presto_host``/``presto_port``, ``spark_conf_dir``, ``spark_home``,
    ``warehouse_dir``, ``warehouse_uri``, ``airflow_url``, ``airflow_user``,
    ``airflow_dags_folder``, ``prometheus_url``, ``java_home`` and ``python``.
    """
    path = stack_json_path(repo_root)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: start the local stack with `make stack-up`") from None
    return data


def spark_env(repo_root: Path | None = None) -> dict[str, str]:
    """Environment variables that make a Spark process (spark-submit or a Python process
    creating a SparkSession) use the stack: SPARK_HOME, SPARK_CONF_DIR, JAVA_HOME, PYSPARK_PYTHON.

    Merge them into ``os.environ`` (or a subprocess env); the conf dir carries spark.jars
    (Kafka source), the shared metastore URI and the warehouse dir.
    """
    info = load_stack_info(repo_root)
    java_home = info["java_home"]
    return {
        "SPARK_HOME": info["spark_home"],
        "SPARK_CONF_DIR": info["spark_conf_dir"],
        "JAVA_HOME": java_home,
        "PYSPARK_PYTHON": info["python"],
        "PYSPARK_DRIVER_PYTHON": info["python"],
    }


__all__ = ["load_stack_info", "spark_env", "stack_json_path"]
