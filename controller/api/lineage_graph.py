"""The lineage graph the board draws for one stage of a release, from its audit records.

Audit records carry dataset lineage (``lineage.inputs``/``outputs``: ``kafka:topic`` and
``hive:db.table`` names, ``lineage.columns``: output column -> input columns of the transforms) and
the actions they ran (``Kind/name/verb: state``). The graph joins them, for the newest version
recorded at the stage:

- nodes: topics (``kafka:`` datasets), streaming jobs, tables, views, transforms and DAGs: the
  resources the stage's actions named over all its records, less those whose last action deleted
  them and the versioned tables and jobs of other versions, plus the version's datasets. A canary
  runs in its target's installation: what the canary stage created (a topic, say) shows under the
  canary stage, not the target's;
- topic -> job: every topic the records read feeds every job of the version (exact with one job;
  ``inferred`` when there are several, the records do not say which job reads which topic);
- job -> table: a job writes the physical tables of its own version (``…-v1-2-0`` writes
  ``…__v1_2_0``, the naming of ``controller.plan.desired``);
- table -> view: a view serves the table of the same name (``db.x__v1_2_0`` or ``db.x`` -> view
  ``db.x``), or else (``inferred``) every view of the release serves every table the release created;
- input table -> transform: from the column lineage (each edge lists its columns);
- transform -> DAG: the release's DAGs refresh its transforms (``inferred``).

Pure: records in, ``{"stage", "version", "nodes", "edges"}`` out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_VERSIONED = re.compile(r"\A(?P<base>.+)__v(?P<v>\d+(?:_\d+)*)\Z")
_JOB_VERSION = re.compile(r"-v(?P<v>\d+(?:-\d+)*)\Z")
_KINDS = {"Topic": "topic", "StreamingJob": "job", "Table": "table", "View": "view",
          "Transform": "transform", "Dag": "dag"}


def _resources(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{name: kind}`` of the resources the records' actions name and did not end up deleting."""
    alive: dict[tuple[str, str], bool] = {}
    for rec in records:
        for action in rec.get("actions") or []:
            ident = str(action).split(": ", 1)[0]
            kind, _, rest = ident.partition("/")
            name, _, verb = rest.rpartition("/")
            if kind in _KINDS and name:
                alive[(_KINDS[kind], name)] = verb != "delete"
    return {name: kind for (kind, name), ok in alive.items() if ok}


def _dataset(urn: str, resources: Mapping[str, str]) -> tuple[str, str]:
    """(kind, name) of a lineage dataset (``kafka:t`` or ``hive:db.t``)."""
    scheme, _, name = urn.partition(":")
    if scheme == "kafka":
        return "topic", name
    kind = resources.get(name)
    return (kind if kind in ("table", "view", "transform") else "table"), name


def _add_edge(edges: dict[tuple[str, str], dict[str, Any]], src: str, dst: str, inferred: bool = False,
              column: str | None = None) -> None:
    e = edges.setdefault((src, dst), {"from": src, "to": dst, "inferred": inferred, "columns": []})
    if column and column not in e["columns"]:
        e["columns"].append(column)


Record = Mapping[str, Any]


def _stage_records(records: Sequence[Record], stage: str) -> tuple[str | None, list[Record], list[Record]]:
    """(the newest version recorded at ``stage``, every record of the stage, that version's records)."""
    at_stage = [r for r in records if r.get("stage") == stage]
    if not at_stage:
        return None, [], []
    version = at_stage[-1].get("version")
    return version, at_stage, [r for r in at_stage if r.get("version") == version]


def _other_version(name: str, kind: str, version: str | None) -> bool:
    """A versioned table or job of another version than ``version`` (kept for rollback, not serving)."""
    suffix = (version or "").replace(".", "_")
    m = _VERSIONED.match(name) if kind == "table" else _JOB_VERSION.search(name) if kind == "job" else None
    return m is not None and m["v"].replace("-", "_") != suffix


def lineage_graph(records: Sequence[Mapping[str, Any]], stage: str) -> dict[str, Any]:
    """The graph of ``stage`` from ``records`` (oldest first): see the module's rules."""
    version, every, mine = _stage_records(records, stage)
    resources = {n: k for n, k in _resources(every).items() if not _other_version(n, k, version)}
    nodes: dict[str, dict[str, Any]] = {}

    def node(kind: str, name: str) -> str:
        key = f"{kind}:{name}"
        nodes.setdefault(key, {"id": key, "kind": kind, "name": name})
        return key

    for name, kind in resources.items():
        node(kind, name)
    columns: dict[str, list[str]] = {}
    for rec in every:  # column lineage as last recorded (a version that kept a transform records none)
        columns.update((rec.get("lineage") or {}).get("columns") or {})
    for rec in mine:
        lin = rec.get("lineage") or {}
        for urn in [*(lin.get("inputs") or []), *(lin.get("outputs") or [])]:
            node(*_dataset(str(urn), resources))
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    jobs = [n for n in nodes.values() if n["kind"] == "job"]
    for topic in [n for n in nodes.values() if n["kind"] == "topic"]:
        for job in jobs:
            _add_edge(edges, topic["id"], job["id"], inferred=len(jobs) > 1)
    for n in [t for t in nodes.values() if t["kind"] == "table"]:
        m = _VERSIONED.match(n["name"])
        for job in jobs if m else []:
            jm = _JOB_VERSION.search(job["name"])
            if m and jm and jm["v"].replace("-", "_") == m["v"]:
                _add_edge(edges, job["id"], n["id"])
        named = f"view:{m['base'] if m else n['name']}"
        own = n["name"] in resources  # a table of another release (an input) serves none of these views
        all_views = [v["id"] for v in nodes.values() if v["kind"] == "view" and own]
        views = [named] if named in nodes else all_views
        for view in views:
            _add_edge(edges, n["id"], view, inferred=view != named)
    for out_col, in_cols in columns.items():
        out_kind, out = _dataset(out_col.rsplit(".", 1)[0], resources)
        if f"{out_kind}:{out}" not in nodes:  # a transform since removed
            continue
        for in_col in in_cols:
            in_kind, src = _dataset(in_col.rsplit(".", 1)[0], resources)
            _add_edge(edges, node(in_kind, src), node(out_kind, out), column=out_col.rsplit(".", 1)[1]
                      if "." in out_col else None)
    for tr in [n for n in nodes.values() if n["kind"] == "transform"]:
        for dag in [n for n in nodes.values() if n["kind"] == "dag"]:
            _add_edge(edges, tr["id"], dag["id"], inferred=True)
    return {"stage": stage, "version": version, "nodes": list(nodes.values()), "edges": list(edges.values())}
