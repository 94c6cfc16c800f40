"""The stack's Spark standalone master and worker, offline: loopback only (daemons and their web
UIs), the REST submission server enabled on its own port, a small worker. Running for real:
tests/integration/test_spark_cluster.py."""

from __future__ import annotations

from pathlib import Path

from controller.devstack.component import Context
from controller.devstack.components import ALIASES, COMPONENTS
from controller.devstack.layout import Layout
from controller.devstack.spark_cluster import SparkMaster, SparkWorker


def _ctx(tmp_path: Path) -> Context:
    return Context(layout=Layout(tmp_path), java_home=Path("/usr"), spark_home=tmp_path / "spark",
                   spark_version="3.5.9", python="python3", pg_bin=None)


def test_master_binds_loopback_and_enables_the_rest_server(tmp_path: Path) -> None:
    master = SparkMaster(_ctx(tmp_path))
    master.prepare()
    argv, env, cwd = master.command()
    assert argv[:2] == [str(tmp_path / "spark" / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "7077"
    assert argv[argv.index("--webui-port") + 1] == "8180"  # 8080 is Presto's
    conf = Path(argv[argv.index("--properties-file") + 1]).read_text().splitlines()
    assert {"spark.master.rest.enabled true", "spark.master.rest.host 127.0.0.1",
            "spark.master.rest.port 6066"} <= set(conf)
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"  # the web UI binds to it, else to 0.0.0.0
    assert env["SPARK_NO_DAEMONIZE"] == "1" and env["SPARK_DAEMON_MEMORY"] == "128m"
    assert cwd == tmp_path / ".stack" / "spark-master"
    assert master.info()["rest_url"] == "http://127.0.0.1:6066"


def test_worker_is_small_and_registers_with_the_master(tmp_path: Path) -> None:
    worker = SparkWorker(_ctx(tmp_path))
    argv, env, _ = worker.command()
    assert argv[-1] == "spark://127.0.0.1:7077" and worker.deps == ("spark-master",)
    assert argv[argv.index("--cores") + 1] == "2" and argv[argv.index("--memory") + 1] == "1200m"
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert Path(argv[argv.index("--work-dir") + 1]).is_dir()


def test_components_and_alias() -> None:
    assert {SparkMaster, SparkWorker} <= set(COMPONENTS)
    assert ALIASES["spark-cluster"] == ("spark-master", "spark-worker")
