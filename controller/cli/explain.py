"""``pipectl explain KIND[.field…]``: a manifest field's type, description and fields, read from the
JSON Schemas in ``schemas/`` (``make generate`` writes them from the models; installed without the
repository, the same schemas come from the models directly).

    pipectl explain PipelineRelease.spec.rollout.gates
    pipectl explain environment.spec.kafka
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import typer

from controller.model.manifest import API_VERSION

KINDS = {
    "pipelinerelease": "PipelineRelease",
    "pipelinereleases": "PipelineRelease",
    "pr": "PipelineRelease",
    "release": "PipelineRelease",
    "releases": "PipelineRelease",
    "environment": "Environment",
    "environments": "Environment",
    "env": "Environment",
}
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def schema_of(kind: str) -> dict[str, Any]:
    path = SCHEMAS / f"{kind.lower()}.schema.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    from controller.model.jsonschema import json_schema

    return json_schema(kind)


class Schema:
    def __init__(self, root: dict[str, Any]):
        self.root = root
        self.defs: dict[str, Any] = root.get("$defs", {})

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` and drop ``null`` from ``anyOf`` (an optional field is its type)."""
        while True:
            if "$ref" in node:
                extra = {k: v for k, v in node.items() if k != "$ref"}
                node = {**self.defs[node["$ref"].split("/")[-1]], **extra}
            elif "anyOf" in node:
                options = [o for o in node["anyOf"] if o.get("type") != "null"]
                if len(options) != 1:
                    return node
                extra = {k: v for k, v in node.items() if k != "anyOf"}
                node = {**options[0], **extra}
            else:
                return node

    def variants(self, node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """A ``oneOf`` (the gate types): (discriminator value or title, resolved schema) each."""
        node = self.resolve(node)
        out = []
        for option in node.get("oneOf", []):
            r = self.resolve(option)
            tag = r.get("properties", {}).get("type", {})
            out.append((str(tag.get("const") or (tag.get("enum") or [None])[0] or r.get("title", "?")), r))
        return out

    def element(self, node: dict[str, Any]) -> dict[str, Any]:
        """Through arrays and maps to the schema of one element (what ``.field`` continues into)."""
        node = self.resolve(node)
        while True:
            if node.get("type") == "array" and isinstance(node.get("items"), dict):
                node = self.resolve(node["items"])
            elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict) \
                    and "properties" not in node:
                node = self.resolve(node["additionalProperties"])
            else:
                return node

    def type_name(self, node: dict[str, Any]) -> str:
        raw = node
        node = self.resolve(node)
        if "oneOf" in node or "anyOf" in node:
            return "Object"
        t = node.get("type")
        if t == "array":
            return "[]" + self.type_name(node.get("items", {}))
        if t == "object" or "properties" in node:
            extra = node.get("additionalProperties")
            if isinstance(extra, dict) and "properties" not in node:
                return f"map[string]{self.type_name(extra)}"
            return "Object"
        if "enum" in node:
            return "string"
        return str(t or ("Object" if "$ref" in raw else "any"))

    def fields(self, node: dict[str, Any]) -> dict[str, Any]:
        node = self.element(node)
        props: dict[str, Any] = dict(node.get("properties", {}))
        for _, variant in self.variants(node):
            for k, v in variant.get("properties", {}).items():
                props.setdefault(k, v)
        return props


def _describe(node: dict[str, Any]) -> str:
    parts = [str(node.get("description") or "").strip()]
    if "enum" in node:
        parts.append("One of: " + ", ".join(str(e) for e in node["enum"]) + ".")
    if "const" in node:
        parts.append(f"Always {json.dumps(node['const'])}.")
    if node.get("default") is not None and not isinstance(node["default"], dict | list):
        parts.append(f"Default: {json.dumps(node['default'])}.")
    return " ".join(p for p in parts if p) or "<empty>"


def _wrap(text: str, indent: int) -> str:
    return textwrap.fill(text, width=100, initial_indent=" " * indent, subsequent_indent=" " * indent)


def _field_lines(s: Schema, props: dict[str, Any], required: set[str], indent: int) -> list[str]:
    lines = []
    for name, sub in props.items():
        mark = " -required-" if name in required else ""
        lines.append(" " * indent + f"{name}\t<{s.type_name(sub)}>{mark}")
        lines.append(_wrap(_describe(s.resolve(sub)), indent + 2))
        lines.append("")
    return lines


def explain_text(path: str) -> str:
    head, *parts = path.split(".")
    kind = KINDS.get(head.lower()) or KINDS.get(head.lower().rstrip("s"))
    if kind is None:
        _fail(f"unknown kind {head!r} (try: PipelineRelease, Environment)")
    s = Schema(schema_of(kind))
    node: dict[str, Any] = s.root
    for i, part in enumerate(parts):
        props = s.fields(node)
        if part not in props:
            where = ".".join([kind, *parts[:i]])
            _fail(f"field {part!r} does not exist in {where} (fields: {', '.join(props) or 'none'})")
        node = props[part]
    out = [f"KIND:     {kind}", f"VERSION:  {API_VERSION}", ""]
    if parts:
        out += [f"FIELD:    {parts[-1]} <{s.type_name(node)}>", ""]
    out += ["DESCRIPTION:", _wrap(_describe(s.resolve(node)), 5), ""]
    element = s.element(node)
    variants = s.variants(element)
    if variants:
        first = variants[0][1].get("properties", {})
        common = {k: p for k, p in first.items() if k != "type" and all(
            v.get("properties", {}).get(k) == p for _, v in variants)}
        required = set.intersection(*(set(v.get("required", [])) for _, v in variants))
        out += ["FIELDS (every type):", *_field_lines(s, common, required, 3), "ONE OF (by type):"]
        for tag, v in variants:
            own = {k: p for k, p in v.get("properties", {}).items() if k not in common and k != "type"}
            desc = str(v.get("description") or "").strip()
            out += ["", f"   type: {tag}" + (f" - {desc}" if desc else "")]
            out += _field_lines(s, own, set(v.get("required", [])), 5) or ["     (no other fields)", ""]
    elif element.get("properties"):
        out.append("FIELDS:")
        out += _field_lines(s, element["properties"], set(element.get("required", [])), 3)
    return "\n".join(out).rstrip() + "\n"


def explain(
    path: str = typer.Argument(..., help="KIND[.field…], e.g. PipelineRelease.spec.rollout.gates"),
) -> None:
    """Describe a manifest field: its type, description and fields (from the JSON Schemas)."""
    typer.echo(explain_text(path), nl=False)
