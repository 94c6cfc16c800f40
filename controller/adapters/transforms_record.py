"""pipectl's record of a transform's materialization: the JSON kept in the serving view's
``pipectl_transform`` CTE (and in a built table's comment), how it is read back into an observed
``TransformResource``, and the naming of the tables a transform is built into.

Pure functions (no server), used by ``controller.adapters.transforms``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from controller.plan.resources import Column, Owner, TransformInput, TransformResource

META_CTE = "pipectl_transform"
COMMENT_PREFIX = "pipectl:"
_META = re.compile(r'"pipectl_transform"\s+AS\s+\(\s*SELECT\s+\'((?:[^\']|\'\')*)\'', re.S)


def parse_meta(view_text: str) -> dict[str, Any] | None:
    """pipectl's record in a transform's view text (``WITH "pipectl_transform" AS (SELECT '…')``)."""
    m = _META.search(view_text)
    if not m:
        return None
    try:
        meta = json.loads(m.group(1).replace("''", "'"))
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and "digest" in meta else None


def build_time() -> str:
    """Build time, sortable as text (orders a transform's tables for clean-up)."""
    return f"{time.time():017.3f}"


def short_digest(d: str) -> str:
    """``algo:<first 12 hex>`` of a digest, for messages."""
    algo, sep, hexpart = d.partition(":")
    return f"{algo}:{hexpart[:12]}" if sep else d[:12]


def versioned_name(name: str, digest: str) -> str:
    """``db.name`` + digest → ``db.name__<first 8 hex>``."""
    hexpart = digest.partition(":")[2] or digest
    return f"{name}__{hexpart[:8]}"


def is_served(live: TransformResource) -> bool:
    """Whether a live transform is pipectl's and serves data (a view, or a view on its table)."""
    return live.managed and (live.materialized == "view" or live.relation is not None)


def view_meta(desired: TransformResource, relation: str | None) -> dict[str, Any]:
    """The record kept in the serving view: the table record plus upstream and (for tables) the SQL."""
    meta = table_meta(desired, relation)
    meta["upstream"] = [u.model_dump() for u in desired.upstream]
    if desired.materialized != "view":
        meta["sql"] = desired.compiled_sql  # what scheduled runs execute
    return meta


def table_meta(desired: TransformResource, relation: str | None) -> dict[str, Any]:
    """The record of a materialization (also a built table's comment)."""
    return {
        "v": 1,
        "transform": desired.name,
        "release": desired.owner.release if desired.owner else None,
        "version": desired.owner.version if desired.owner else None,
        "materialized": desired.materialized,
        "digest": desired.digest,
        "sql_digest": desired.compiled_sql_digest,
        "relation": relation,
        "partition_by": list(desired.partition_by),
        "columns": [c.model_dump() for c in desired.columns],
        "contract": None if desired.contract is None else [c.model_dump() for c in desired.contract],
        "built_at": build_time(),
    }


def resource_from_meta(name: str, meta: dict[str, Any], relation: str | None) -> TransformResource:
    """The observed transform a record describes (``relation``: the table it serves, if present)."""
    owner = None
    if meta.get("release"):
        owner = Owner(release=str(meta["release"]), version=str(meta.get("version") or ""))
    return TransformResource(
        name=name,
        owner=owner,
        materialized=str(meta.get("materialized", "view")),
        compiled_sql_digest=str(meta.get("sql_digest", "")),
        digest=str(meta.get("digest", "")),
        upstream=[TransformInput.model_validate(u) for u in meta.get("upstream") or []],
        refs=[str(u.get("ref")) for u in meta.get("upstream") or []],
        columns=[Column.model_validate(c) for c in meta.get("columns") or []],
        contract=None
        if meta.get("contract") is None
        else [Column.model_validate(c) for c in meta["contract"]],
        partition_by=[str(p) for p in meta.get("partition_by") or []],
        relation=relation,
    )
