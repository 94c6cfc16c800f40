"""Editors validate the example manifests against the repo's JSON Schemas: each manifest's
yaml-language-server modeline names an existing schema of its kind by relative path, and the
schemas' ``$id`` is relative (it resolves to wherever the file is read from)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "# yaml-language-server: $schema="


def test_every_example_manifest_names_its_schema() -> None:
    files = sorted((ROOT / "manifests" / "releases").glob("*.yaml"))
    files += sorted((ROOT / "manifests" / "environments").glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith(PREFIX), path
        target = (path.parent / first.removeprefix(PREFIX)).resolve()
        kind = yaml.safe_load(path.read_text())["kind"]
        assert target == ROOT / "schemas" / f"{kind.lower()}.schema.json", path
        schema = json.loads(target.read_text())
        assert schema["title"] == kind and schema["$id"] == target.name
