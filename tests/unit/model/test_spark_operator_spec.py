"""``spec.spark.runner: sparkOperator`` and its ``sparkOperator`` section in an Environment: accepted
as documented, and every misuse refused at its file, line and field path. What each field does in
the SparkApplication: tests/unit/adapters/test_spark_operator.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.source.validate import load_repo

DEV = "environments/dev.yaml"
OPERATOR = (
    "    runner: sparkOperator\n    sparkOperator:\n      namespace: spark-jobs\n"
    "      image: registry.local/pipectl-jobs:1.2\n      serviceAccount: spark\n      sparkVersion: 3.5.5\n"
)


def set_spark(root: Path, block: str) -> list[str]:
    path = root / DEV
    text = path.read_text()
    assert "    master: local[2]\n" in text
    path.write_text(text.replace("    master: local[2]\n", block, 1))
    return [str(p) for p in load_repo(root).problems]


def test_the_operator_runner_is_accepted_with_its_defaults(repo: Path) -> None:
    assert set_spark(repo, OPERATOR) == []
    spark = load_repo(repo).environment("dev").spec.spark
    assert spark is not None and spark.runner == "sparkOperator" and spark.spark_operator is not None
    ops = spark.spark_operator
    assert (ops.namespace, ops.image, ops.service_account, ops.spark_version) == (
        "spark-jobs", "registry.local/pipectl-jobs:1.2", "spark", "3.5.5")
    assert (ops.app_root, ops.on_failure_retries) == ("/opt/pipectl/repo", 10)
    assert (ops.driver.cores, ops.driver.memory) == (1, "512m")
    assert (ops.executor.instances, ops.executor.cores, ops.executor.memory) == (1, 1, "512m")


@pytest.mark.parametrize(("block", "message"), [
    ("    runner: sparkOperator\n",
     "21: spec.spark: runner sparkOperator needs a sparkOperator section (namespace, image, serviceAccount, "
     "sparkVersion)"),
    (OPERATOR + "    master: local[2]\n",
     "21: spec.spark: master is a spark-submit setting: with runner sparkOperator the operator runs every "
     "driver in cluster mode"),
    (OPERATOR + "    master: local[2]\n    deployMode: client\n",
     "21: spec.spark: master and deployMode are spark-submit settings: with runner sparkOperator the operator "
     "runs every driver in cluster mode"),
    ("    master: local[2]\n" + OPERATOR[len("    runner: sparkOperator\n"):],
     "21: spec.spark: sparkOperator is only used with runner: sparkOperator"),
    ("    runner: yarn\n", "22: spec.spark.runner: runner 'yarn' is not supported: use sparkSubmit or sparkOperator"),
    (OPERATOR.replace("spark-jobs", "Spark_Jobs"),
     "24: spec.spark.sparkOperator.namespace: invalid name 'Spark_Jobs': lower-case letters, digits and '-', "
     "starting and ending alphanumeric, max 63"),
    (OPERATOR + "      appRoot: opt/repo\n",
     "28: spec.spark.sparkOperator.appRoot: appRoot 'opt/repo' must be an absolute path without '..' or spaces"),
    (OPERATOR + "      driver: {memory: 1 GB}\n",
     "28: spec.spark.sparkOperator.driver.memory: memory '1 GB' must be a Spark size such as 512m or 2g"),
])
def test_misuse_is_refused_at_file_line_and_field(repo: Path, block: str, message: str) -> None:
    assert set_spark(repo, block) == [f"{DEV}:{message}"]
