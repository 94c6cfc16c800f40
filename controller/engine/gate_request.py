"""What the engine asks the gate runner: one stage's gates for one version, with everything the
pure gate functions need (tables and jobs by logical name, the baseline, schema texts, ``now``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from controller.audit.ledger import GateVerdict
from controller.engine.backends import StagePorts
from controller.model.manifest import PipelineRelease
from controller.plan.desired import StageContext
from controller.plan.keysplit import KeyFilter


@dataclass
class GateRequest:
    release: PipelineRelease
    stage: str
    ctx: StageContext
    backends: StagePorts
    tables: dict[str, str]
    jobs: dict[str, str]
    baseline_tables: dict[str, str]
    baseline_version: str | None
    schema_texts: dict[str, str]
    now: datetime
    only: frozenset[str] | None = None
    """Evaluate only these gates (post-promotion analysis); None: every gate of the stage."""
    canary_keys: KeyFilter | None = None
    """A key-subset canary's step: (key columns, percent or listed keys); canaryComparison reads
    those keys only."""
    catalogs: dict[str, str] = field(default_factory=dict)
    """Physical table → the Presto catalog that reads it, where that is not the stage's own
    (``plan.desired.table_catalogs``, for the version and the baseline)."""


class GateRunner(Protocol):
    def evaluate(self, req: GateRequest) -> list[GateVerdict]: ...
