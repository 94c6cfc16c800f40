"""``spec.schemaRegistry`` in an Environment: accepted as documented, misuse refused at its file,
line and field path. What it does to a job's arguments: tests/unit/plan/test_desired.py; the token
in the job's environment: tests/unit/adapters/test_spark_offline.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.source.validate import load_repo

DEV = "environments/dev.yaml"
OPERATOR = (
    "    runner: sparkOperator\n    sparkOperator:\n      namespace: spark-jobs\n"
    "      image: registry.local/pipectl-jobs:1.2\n      serviceAccount: spark\n      sparkVersion: 3.5.5\n"
)


def with_registry(root: Path, registry: str, spark: str | None = None) -> list[str]:
    path = root / DEV
    text = path.read_text().replace("spec:\n", f"spec:\n  schemaRegistry: {registry}\n", 1)
    if spark is not None:
        text = text.replace("    master: local[2]\n", spark, 1)
    path.write_text(text)
    return [str(p) for p in load_repo(root).problems]


def test_the_registry_url_is_accepted(repo: Path) -> None:
    assert with_registry(repo, "{url: http://127.0.0.1:8088/schema-registry}") == []
    sr = load_repo(repo).environment("dev").spec.schema_registry
    assert sr is not None and sr.url == "http://127.0.0.1:8088/schema-registry"


@pytest.mark.parametrize(("registry", "spark", "message"), [
    ("{url: ftp://ctl/schema-registry}", None,
     "6: spec.schemaRegistry.url: expected an http:// or https:// URL, got 'ftp://ctl/schema-registry'"),
    ("{url: http://ctl:8088, token: pcr_x}", None, "6: spec.schemaRegistry.token: unknown field"),
    ("{url: http://ctl:8088/schema-registry}", OPERATOR,
     "5: spec: schemaRegistry is not handed to runner sparkOperator jobs: their environment would be a "
     "Kubernetes object, and the registry token is never written down"),
])
def test_misuse_is_refused_at_its_field(repo: Path, registry: str, spark: str | None, message: str) -> None:
    problems = with_registry(repo, registry, spark)
    assert problems == [f"{DEV}:{message}"]
