"""Local stack of real backends for pipectl's integration tests and demo.

``python -m controller.devstack up|down|status [--only NAME[,NAME]]`` installs what is
missing (apt as root, Maven jars, the Presto tarball, an Airflow venv), starts PostgreSQL,
the Hive metastore, Kafka, the Spark Thrift Server, Presto and Airflow on 127.0.0.1,
waits until each answers a real request, and writes ``.stack/stack.json``.

This package is an independent developer tool: it uses the standard library only and
imports nothing else from ``controller``. Code that needs the stack reads
``.stack/stack.json`` through :mod:`controller.devstack.info`.
"""

from controller.devstack.info import load_stack_info, spark_env

__all__ = ["load_stack_info", "spark_env"]
