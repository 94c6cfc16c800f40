"""The controller visits releases in dependency order."""

from __future__ import annotations

from pathlib import Path

from controller.engine.controller import dependency_order
from controller.source.validate import load_repo


def test_dependencies_first(repo: Path) -> None:
    for name, deps in (("zz-common", []), ("aa-consumer", ["zz-common"])):
        (repo / "releases" / f"{name}.yaml").write_text(
            "apiVersion: pipectl.dev/v1alpha1\nkind: PipelineRelease\n"
            f"metadata:\n  name: {name}\nspec:\n  version: 0.1.0\n  dependsOn: {deps}\n"
            "  rollout:\n    stages: [dev]\n".replace("'", "")
        )
    order = dependency_order(load_repo(repo))
    assert order.index("zz-common") < order.index("aa-consumer")


def test_fingerprints_change_only_for_what_a_commit_touched(repo: Path) -> None:
    from controller.engine.controller import fingerprints

    (repo / "releases" / "other.yaml").write_text(
        "apiVersion: pipectl.dev/v1alpha1\nkind: PipelineRelease\nmetadata:\n  name: other\n"
        "spec:\n  version: 0.1.0\n  rollout:\n    stages: [dev]\n"
    )
    before = fingerprints(load_repo(repo))
    (repo / "jobs" / "host_metrics_agg.py").write_text("print('changed job code')\n")
    after = fingerprints(load_repo(repo))
    assert before["other"] == after["other"]
    assert before["host-metrics"] != after["host-metrics"]  # a referenced file changed
    env = repo / "environments" / "dev.yaml"
    env.write_text(env.read_text().replace('topicPrefix: "dev."', 'topicPrefix: "dev2."'))
    again = fingerprints(load_repo(repo))
    assert again["other"] != after["other"]  # environments concern every release
