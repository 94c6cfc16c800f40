"""What the transform compiler produces (pure): the relation a ref reads at a stage, a transform
compiled for a stage, and the digests that identify them.

The materialization ``digest`` of a transform is the sha256 of its compiled SQL digest, its
materialization, its partition columns and the digests of its inputs: equal digests mean "nothing
to re-run" (see ``controller.plan.transforms``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from controller.model.manifest import TransformSpec
from controller.plan.resources import Column

UNKNOWN_TYPE = "unknown"  # the type of a column sqlglot could not infer (an input of unknown schema)


@dataclass(frozen=True)
class Relation:
    """What ``ref(logical)`` reads at a stage."""

    logical: str
    physical: str
    kind: Literal["table", "view", "transform", "external"]
    digest: str
    label: str
    columns: tuple[Column, ...] | None = None
    same_release_transform: bool = False
    catalog: str | None = None
    """The Presto catalog that reads ``physical`` when the stage's own cannot (an Iceberg table)."""


@dataclass(frozen=True)
class CompiledTransform:
    """One transform compiled for one stage."""

    spec: TransformSpec
    index: int
    name: str
    sql: str
    sql_digest: str
    refs: tuple[str, ...]
    inputs: tuple[Relation, ...]
    columns: tuple[Column, ...]
    columns_known: bool
    lineage: Mapping[str, tuple[tuple[str, str], ...]]
    digest: str
    depends_on: tuple[str, ...]
    contract_breaks: tuple[str, ...] = ()

    def lineage_columns(self) -> dict[str, list[str]]:
        """``hive:<db.name>.<column>`` → the input columns it is computed from (audit format)."""
        return {
            f"hive:{self.name}.{col}": sorted({f"hive:{rel}.{c}" for rel, c in srcs})
            for col, srcs in self.lineage.items()
        }


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def short(d: str) -> str:
    """``sha256:<12 hex>``: enough to tell materializations apart in a plan."""
    algo, sep, hexpart = d.partition(":")
    return f"{algo}:{hexpart[:12]}" if sep else d[:12]


def materialization_digest(
    sql_digest: str, materialized: str, partition_by: Sequence[str], inputs: Sequence[tuple[str, str]]
) -> str:
    """The identity of a materialization: equal digests, nothing to re-run."""
    payload = {
        "sql": sql_digest,
        "materialized": materialized,
        "partition_by": list(partition_by),
        "inputs": sorted([list(i) for i in inputs]),
    }
    return sha(json.dumps(payload, sort_keys=True, separators=(",", ":")))
