"""Generated JSON Schemas and the CRD must match the models (run `make generate` when this fails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.cli.generate import render

ROOT = Path(__file__).resolve().parents[3]


def test_generated_files_are_fresh() -> None:
    stale = [
        rel for rel, text in render().items() if not (ROOT / rel).exists() or (ROOT / rel).read_text() != text
    ]
    assert stale == [], f"stale generated files (run `make generate`): {stale}"


def _walk(node: Any, path: str, out: list[str]) -> None:
    if isinstance(node, dict):
        for bad in ("$ref", "anyOf", "oneOf", "allOf", "const", "$defs"):
            if bad in node:
                out.append(f"{path}: {bad}")
        if "properties" in node:
            if node.get("type") != "object":
                out.append(f"{path}: properties without type object")
            for k, v in node["properties"].items():
                if not (
                    {"type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"} & v.keys()
                ):
                    out.append(f"{path}.{k}: no type")
                _walk(v, f"{path}.{k}", out)
        if isinstance(node.get("items"), dict):
            _walk(node["items"], f"{path}[]", out)
        if isinstance(node.get("additionalProperties"), dict):
            _walk(node["additionalProperties"], f"{path}{{}}", out)


def test_crd_is_structural() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "pipelinerelease.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Version", "Stage", "Phase", "Gates", "Age"]
    problems: list[str] = []
    _walk(version["schema"]["openAPIV3Schema"], "", problems)
    assert problems == []
    gates = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["rollout"]["properties"][
        "gates"
    ]
    assert gates["items"]["properties"]["type"]["enum"] == [
        "schemaCompatibility",
        "dataQuality",
        "streamingHealth",
        "canaryComparison",
        "approval",
    ]


def test_json_schema_accepts_reference_release_shape() -> None:
    import json

    schema = json.loads((ROOT / "schemas" / "pipelinerelease.schema.json").read_text())
    assert schema["title"] == "PipelineRelease"
    assert "spec" in schema["required"]
