"""``devstack up --only core`` (what ``make demo`` starts): every component but the Kubernetes API
server, the Spark cluster and Prometheus, so the demo neither builds kube-apiserver nor runs the
cluster (``make test`` starts them all)."""

from __future__ import annotations

from controller.devstack.components import ALIASES
from controller.devstack.stack import ORDER, _expand


def test_core_is_everything_but_kube_the_spark_cluster_and_prometheus() -> None:
    left_out = set(ALIASES["kube"]) | set(ALIASES["spark-cluster"]) | {"prometheus"}
    assert sorted(_expand(["core"])) == sorted(n for n in ORDER if n not in left_out)
    assert not left_out & set(_expand(["core"]))
