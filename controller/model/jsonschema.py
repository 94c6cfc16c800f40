"""JSON Schema for the manifest kinds, and its structural form for the Kubernetes CRD.

``json_schema(kind)`` is what editors use (yaml-language-server). ``structural(schema)`` inlines
``$ref``s and rewrites what apiextensions.k8s.io/v1 forbids (``anyOf`` with null, ``oneOf`` of
objects, ``const``, ``default`` objects) so the CRD validates the same shape.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.model.manifest import API_VERSION, Environment, PipelineRelease
from controller.model.status import ReleaseStatus

KIND_MODELS = {"PipelineRelease": PipelineRelease, "Environment": Environment}


def json_schema(kind: str) -> dict[str, Any]:
    model = KIND_MODELS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    # relative: it resolves against wherever the file is read from (schemas/ in the repository)
    schema["$id"] = f"{kind.lower()}.schema.json"
    schema["title"] = kind
    return schema


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            merged = {**_resolve(copy.deepcopy(defs[name]), defs)}
            for k, v in node.items():
                if k != "$ref":
                    merged[k] = _resolve(v, defs)
            return merged
        return {k: _resolve(v, defs) for k, v in node.items() if k not in {"$defs"}}
    if isinstance(node, list):
        return [_resolve(x, defs) for x in node]
    return node


_DROP = {"title", "$schema", "$id", "discriminator", "examples"}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in _DROP}
    for comb in ("anyOf", "oneOf"):
        if comb not in node:
            continue
        raw = node.pop(comb)
        options = [o for o in raw if o.get("type") != "null"]
        if len(options) < len(raw):
            node["nullable"] = True
        if len(options) == 1:
            node = {**options[0], **node}
        elif all(o.get("type") == "object" for o in options):
            # A discriminated union (gates): one object with the union of the members' properties.
            props: dict[str, Any] = {}
            tags: list[Any] = []
            for o in options:
                for k, v in o.get("properties", {}).items():
                    if k == "type" and "const" in v:
                        tags.append(v["const"])
                    else:
                        props.setdefault(k, v)
            props["type"] = {"type": "string", "enum": tags}
            node = {"type": "object", "properties": props, "required": ["type", "name"], **node}
        elif {o.get("type") for o in options} <= {"integer", "string"}:
            node = {"x-kubernetes-int-or-string": True, **node}
        else:
            node = {"x-kubernetes-preserve-unknown-fields": True, **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for excl, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # OpenAPI v3.0 (what Kubernetes speaks) has boolean exclusive bounds.
        if isinstance(node.get(excl), int | float) and not isinstance(node.get(excl), bool):
            node[bound] = node.pop(excl)
            node[excl] = True
    if "default" in node and (node["default"] is None or isinstance(node["default"], dict | list)):
        if node.pop("default") is None:
            node["nullable"] = True
    if node.get("type") == "object" and "additionalProperties" in node:
        ap = node["additionalProperties"]
        if isinstance(ap, bool) or not ap:
            node.pop("additionalProperties")
            if ap is not False:
                node["x-kubernetes-preserve-unknown-fields"] = True
    if not ({"type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"} & node.keys()):
        if "properties" in node:
            node["type"] = "object"
        elif "items" in node:
            node["type"] = "array"
        else:
            node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in node:
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key])
    return node


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs", {})
    out: dict[str, Any] = _structural(_resolve(schema, defs))
    return out


def crd() -> dict[str, Any]:
    spec_schema = structural(PipelineRelease.model_json_schema(by_alias=True))["properties"]["spec"]
    status_schema = structural(ReleaseStatus.model_json_schema(by_alias=True))
    # written only on objects (``--source kubernetes``, controller/engine/kube_source.py)
    status_schema["properties"]["observedGeneration"] = {"type": "integer", "format": "int64"}
    status_schema["properties"]["gates"] = {
        "type": "string", "description": "passed/total gates at the current stage (- without gates)"
    }
    group, version = API_VERSION.split("/")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"pipelinereleases.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": "PipelineRelease",
                "listKind": "PipelineReleaseList",
                "plural": "pipelinereleases",
                "singular": "pipelinerelease",
                "shortNames": ["pr", "prel"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
                        {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Gates", "type": "string", "jsonPath": ".status.gates"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }
