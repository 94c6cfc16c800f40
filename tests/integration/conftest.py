"""Fixtures for tests against the local stack of real backends (`make stack-up`).

Everything under tests/integration is marked ``integration``. When the stack is not running the
tests are skipped, unless ``CI`` or ``PIPECTL_REQUIRE_STACK`` is set: then they fail.

Reusable fixtures:
- ``stack``: the contents of ``.stack/stack.json`` (health-checked once per session)
- ``kafka_bootstrap``: ``"127.0.0.1:9092"``
- ``hive_conn``: factory of pyhive connections to the Spark Thrift Server (NOSASL)
- ``presto_conn``: factory of pyhive presto connections (catalog ``hive``)
- ``airflow_api``: a configured ``airflow_client.client.ApiClient``
- ``spark_env``: a full environment (os.environ + SPARK_HOME, SPARK_CONF_DIR, JAVA_HOME,
  PYSPARK_PYTHON) for a Spark subprocess that shares the stack's metastore and reads Kafka
- ``unique_name``: a short random lower-case suffix, so tests never collide
- ``pg_url``: a state-store URL in a throwaway schema of the stack's PostgreSQL (dropped afterwards)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.devstack import probes
from controller.devstack.info import load_stack_info
from controller.devstack.info import spark_env as stack_spark_env

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The local stack's Airflow password (as the Makefile exports it): pipectl has no default
# passwords, and the controllers and CLIs these tests start read it from the environment.
os.environ.setdefault("PIPECTL_AIRFLOW_PASSWORD", "admin")


# The modules whose tests run Spark streaming jobs (or batch Spark jobs) on the machine's cores.
# ``make test`` runs this suite on two pytest-xdist workers: these modules are one unit of work,
# so one worker runs them one after another, while the other worker runs the remaining modules
# (each a unit, so a module's tests stay in order on one worker) beside them. Two of these side by
# side would starve each other's jobs of CPU on a 2-core machine.
SPARK_MODULES = frozenset({
    "test_adapter_spark",
    "test_example_job_idempot",
    "test_iceberg_sink",
    "test_in_place_rollback_repairs_data",
    "test_key_subset_canary",
    "test_replay",
    "test_rollback_everything",
    "test_rollback_inplace",
    "test_schema_wire",
    "test_schema_wire_controller",
    "test_second_pipeline",
    "test_spark_cluster",
    "test_spark_operator",
    "test_stack_smoke",
    "test_zero_downtime",
})
_missing = sorted(m for m in SPARK_MODULES if not (HERE / f"{m}.py").exists())
if _missing:
    raise pytest.UsageError(f"SPARK_MODULES names modules that do not exist: {_missing}")


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: ``spark`` for the modules above, else its module."""
    module = nodeid.split("::", 1)[0]
    return "spark" if Path(module).stem in SPARK_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scope scheduling with ``work_unit`` as the scope (its ``xdist_group`` marks
    do not group under pytest 9, whose node ids no longer come from the ``_nodeid`` xdist sets).
    The largest unit goes out first, so the Spark modules start at once on one worker."""
    from xdist.scheduler import LoadScopeScheduling

    class _SparkApart(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return _SparkApart(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _stack_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("PIPECTL_REQUIRE_STACK"))


def _unavailable(reason: str) -> None:
    if _stack_required():
        pytest.fail(f"local stack required (CI/PIPECTL_REQUIRE_STACK set) but {reason}", pytrace=False)
    pytest.skip(f"local stack not running: make stack-up ({reason})")


def _health_problems(info: dict[str, Any]) -> list[str]:
    c = info["components"]
    host = info["host"]
    checks: list[tuple[str, Callable[[], object]]] = [
        ("kafka", lambda: probes.kafka_check(host, c["kafka"]["port"], timeout=3)),
        ("metastore", lambda: probes.metastore_check(host, c["metastore"]["port"], timeout=5)),
        ("thrift", lambda: probes.hs2_check(host, c["thrift"]["port"], timeout=60)),
        ("presto", lambda: probes.presto_check(host, c["presto"]["port"], timeout=60)),
        ("airflow", lambda: probes.airflow_scheduler_check(host, c["airflow-webserver"]["port"])),
    ]
    problems = []
    for name, check in checks:
        try:
            check()
        except Exception as e:
            problems.append(f"{name}: {type(e).__name__}: {e}")
    return problems


@pytest.fixture(scope="session")
def stack() -> dict[str, Any]:
    try:
        info = load_stack_info(REPO_ROOT)
    except FileNotFoundError:
        _unavailable(".stack/stack.json not found")
        raise  # unreachable: _unavailable raises
    problems = _health_problems(info)
    if problems:
        _unavailable("; ".join(problems))
    return info


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: dict[str, Any]) -> str:
    return str(stack["kafka_bootstrap"])


@pytest.fixture
def hive_conn(stack: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """``hive_conn(database="default")`` -> an open pyhive connection to the Thrift Server."""
    from pyhive import hive

    opened: list[Any] = []

    def connect(database: str = "default") -> Any:
        conn = hive.connect(host=stack["thrift_host"], port=int(stack["thrift_port"]), auth="NOSASL",
                            database=database)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        try:
            conn.close()
        except Exception:
            pass


@pytest.fixture
def presto_conn(stack: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """``presto_conn(schema="default")`` -> an open pyhive presto connection (catalog hive)."""
    from pyhive import presto

    opened: list[Any] = []

    def connect(schema: str = "default", catalog: str = "hive") -> Any:
        conn = presto.connect(host=stack["presto_host"], port=int(stack["presto_port"]), catalog=catalog,
                              schema=schema, username="pipectl-tests")
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        try:
            conn.close()
        except Exception:
            pass


@pytest.fixture
def airflow_api(stack: dict[str, Any]) -> Iterator[Any]:
    """An ``airflow_client.client.ApiClient`` for the stack's Airflow (basic auth)."""
    import airflow_client.client as client

    conf = client.Configuration(
        host=f"{stack['airflow_url']}/api/v1",
        username=stack.get("airflow_user", "admin"),
        password=os.environ.get(stack.get("airflow_password_env", "PIPECTL_AIRFLOW_PASSWORD"), "admin"),
    )
    with client.ApiClient(conf) as api:
        yield api


@pytest.fixture(scope="session")
def spark_env(stack: dict[str, Any]) -> dict[str, str]:
    """os.environ plus the stack's Spark variables: pass as ``env=`` to a Spark subprocess."""
    env = dict(os.environ)
    env.update(stack_spark_env(REPO_ROOT))
    env["PATH"] = f"{env['JAVA_HOME']}/bin{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def unique_name() -> str:
    """A short random lower-case suffix (8 chars, starts with a letter)."""
    return "t" + uuid.uuid4().hex[:7]


@pytest.fixture
def pg_url(stack: dict[str, Any], unique_name: str) -> Iterator[str]:
    """A state store in a throwaway schema of the stack's PostgreSQL (the lock key follows the schema)."""
    import psycopg
    from ctlkit import pg_urls

    schema = f"pipectl_{unique_name}"
    url, dsn = pg_urls(stack, schema)
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    yield url
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
