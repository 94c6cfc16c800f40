"""Append-only audit ledger: one record per run, each carrying the hash of the one before.

A record states what ran and why it is allowed in production: git commit, manifest digest, code
artifacts with digests, schema versions and fingerprints, lineage (inputs → outputs), plan summary,
actions, gate verdicts with evidence, outcome, actor and controller instance. ``verify`` recomputes
the chain and names the first record that does not match.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field

from controller.store.db import Store

GENESIS = "0" * 64

RecordKind = Literal[
    "reconcile",
    "apply",
    "promotion",
    "gate",
    "rollback",
    "restore",
    "backfill",
    "approval",
    "replay",
    "transform",
]


class Artifact(BaseModel):
    path: str
    digest: str


class SchemaRef(BaseModel):
    name: str
    version: str
    fingerprint: str
    compatibility: str | None = None


class Lineage(BaseModel):
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    columns: dict[str, list[str]] = Field(default_factory=dict, description="output column → input columns")


class GateVerdict(BaseModel):
    name: str
    type: str
    verdict: str
    message: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)


class AuditRecord(BaseModel):
    record_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    run_id: str
    kind: RecordKind
    release: str
    version: str | None = None
    stage: str | None = None
    git_commit: str | None = None
    manifest_digest: str | None = None
    revision: str | None = None
    """The release revision digest (manifest + referenced files) an approval is bound to."""
    code: list[Artifact] = Field(default_factory=list)
    schemas: list[SchemaRef] = Field(default_factory=list)
    lineage: Lineage = Field(default_factory=Lineage)
    plan_summary: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    gates: list[GateVerdict] = Field(default_factory=list)
    outcome: str
    reason: str | None = None
    message: str = ""
    actor: str = "pipectl-controller"
    controller_instance: str | None = None
    started_at: datetime
    finished_at: datetime


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, record_text: str) -> str:
    return hashlib.sha256((prev_hash + record_text).encode("utf-8")).hexdigest()


class Ledger:
    def __init__(self, store: Store, sinks: list[Any] | None = None):
        self.store = store
        self.sinks = sinks or []

    def append(self, rec: AuditRecord) -> str:
        """Append a record; returns its hash. Sinks (OpenLineage, event stream) get it afterwards."""
        text = canonical(rec.model_dump(mode="json"))
        h = self.store.audit_append(rec.record_id, rec.finished_at, rec.release, rec.kind, text, chain_hash)
        for sink in self.sinks:
            try:
                sink.emit(rec)
            except Exception as e:  # a sink outage must not lose the ledger record
                structlog.get_logger(__name__).warning(
                    "audit sink failed", sink=type(sink).__name__, error=str(e)
                )
        return h

    def records(self, release: str | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self.store.audit_rows(release):
            d = json.loads(r["record"])
            d["seq"], d["hash"], d["prev_hash"] = r["seq"], r["hash"], r["prev_hash"]
            out.append(d)
        return out

    def verify(self) -> tuple[bool, str]:
        """(True, summary) when the chain is intact, else (False, naming the first bad record)."""
        rows = self.store.audit_rows()
        prev = GENESIS
        for r in rows:
            seq, rid = r["seq"], r["record_id"]
            if r["prev_hash"] != prev:
                return (
                    False,
                    f"record #{seq} ({rid}): prev_hash does not match the hash of the record before it",
                )
            if chain_hash(prev, r["record"]) != r["hash"]:
                return False, f"record #{seq} ({rid}): content does not match its hash"
            try:
                if json.loads(r["record"]).get("record_id") != rid:
                    return False, f"record #{seq} ({rid}): record id altered"
            except json.JSONDecodeError:
                return False, f"record #{seq} ({rid}): not valid JSON"
            prev = r["hash"]
        return True, f"{len(rows)} record(s), chain intact"


def now_utc() -> datetime:
    return datetime.now(UTC)
