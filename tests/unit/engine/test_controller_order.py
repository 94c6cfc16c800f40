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
