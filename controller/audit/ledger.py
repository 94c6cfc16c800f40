"""Append-only audit ledger: one record per run, hash-chained over every column, anchored outside
the state store.

A record states what ran and why it is allowed in production: git commit, manifest digest, code
artifacts with digests, schema versions and fingerprints, lineage (inputs → outputs), plan summary,
actions, gate verdicts with evidence, outcome, actor and controller instance.

Tamper evidence, in three parts:

- ``controller/audit/chain.py``: each row's hash covers every column and the previous hash, over
  RFC 8785 canonical JSON; ``verify`` walks the chain from the first record and names the first bad
  one (records of the pre-2 scheme are named as such).
- ``Store.audit_append`` serializes appends on every store (SQLite ``BEGIN IMMEDIATE``,
  PostgreSQL ``LOCK TABLE … IN EXCLUSIVE MODE``) and reads the last hash inside that write
  transaction, so the controller and a CLI ``approve`` never chain onto the same record.
- ``controller/audit/anchor.py``: after each append the head is signed with an Ed25519 key kept
  outside the store and appended to an anchor file (and Kafka); ``verify`` compares the chain with
  the anchors, so a truncated, emptied or rolled-back ledger fails.

``pipectl state backup`` and ``state restore`` are recorded (``record_backup``,
``record_restore``): a restore appends a ``state-restore`` record carrying the previous anchor's
head, and signs a restore anchor that says the same, so a deliberate restore verifies and an
older backup copied into place does not. Tests: ``tests/unit/audit/test_ledger.py``,
``tests/unit/audit/test_anchor.py``, ``tests/unit/cli/test_audit_cli.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog
from pydantic import BaseModel, Field

from controller.audit.anchor import Anchor, Anchors, Head, check_anchored
from controller.audit.chain import GENESIS, canonical, check_chain, row_hash
from controller.store.db import Store

log = structlog.get_logger(__name__)
STATE_RELEASE = "(state)"
"""The ``release`` of records about the state store itself (never a valid release name)."""
__all__ = ["GENESIS", "STATE_RELEASE", "AuditRecord", "Ledger"]

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
    "state-backup",
    "state-restore",
    "maintenance",
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


class TableSnapshot(BaseModel):
    """An Iceberg table's current snapshot after a run's actions (``controller/audit/snapshots.py``).
    The id is a string: Iceberg ids are 64-bit, beyond what the chain's JSON keeps as a number."""

    table: str
    snapshot_id: str | None = None
    """None: the table had no snapshot (no data) yet, or it could not be read (``error``)."""
    committed_at: str | None = None
    error: str | None = None


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
    details: dict[str, Any] = Field(default_factory=dict)
    """Structured facts a kind needs beyond the fields above (a restore: its backup and heads)."""
    snapshots: list[TableSnapshot] = Field(default_factory=list)
    """Each ``format: iceberg`` table of the release at the stage, as the run left it. Records
    written before this field have none; their stored text (what the chain hashes) is unchanged."""


class AuditSink(Protocol):
    """Where a copy of each appended record goes (OpenLineage export, the event stream)."""

    def emit(self, rec: AuditRecord) -> None: ...


class Ledger:
    """The ledger of one state store, with the anchors of that store (``Anchors.for_url``)."""

    def __init__(self, store: Store, sinks: list[AuditSink] | None = None, anchors: Anchors | None = None):
        self.store = store
        self.sinks = sinks or []
        self.annotate: Callable[[AuditRecord], None] | None = None
        """Adds facts to each record before it is chained (``--source kubernetes``: the object)."""
        self.anchors = anchors if anchors is not None else Anchors.for_url(store.url)

    def append(self, rec: AuditRecord, *, restore: dict[str, Any] | None = None) -> str:
        """Append a record and sign the new head; returns its hash. Sinks (OpenLineage, event
        stream) get it afterwards. A head that cannot be signed is logged (the record stays and the
        next append anchors it too), except for a restore, whose anchor is the point: that raises."""
        if self.annotate is not None:
            self.annotate(rec)
        finished = rec.finished_at if rec.finished_at.tzinfo else rec.finished_at.replace(tzinfo=UTC)
        text = canonical(rec.model_dump(mode="json"))
        row = self.store.audit_append(
            rec.record_id, finished.astimezone(UTC), rec.release, rec.kind, text, row_hash
        )
        head = Head(int(row["seq"]), str(row["hash"]), int(row["seq"]))  # verify: seq runs 1..count
        try:
            self.anchors.sign(head, restore)
        except Exception as e:
            if restore is not None:
                raise
            log.error("audit head not anchored", seq=head.seq, error=f"{type(e).__name__}: {e}")
        for sink in self.sinks:
            try:
                sink.emit(rec)
            except Exception as e:  # a sink outage must not lose the ledger record
                log.warning("audit sink failed", sink=type(sink).__name__, error=str(e))
        return head.hash

    def records(self, release: str | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self.store.audit_rows(release):
            d = json.loads(r["record"])
            d["seq"], d["hash"], d["prev_hash"] = r["seq"], r["hash"], r["prev_hash"]
            out.append(d)
        return out

    def verify(self) -> tuple[bool, str]:
        """(True, summary with records and head) when the chain is intact from the first record
        and agrees with its signed anchors; else (False, the first problem, naming the record)."""
        rows = self.store.audit_rows()
        chain = check_chain(rows)
        if chain.problem:
            return False, chain.problem
        anchors, problem = self.anchors.read()
        if problem:
            return False, problem
        problem, found = check_anchored(chain, rows, anchors, self.anchors.file)
        if problem:
            return False, problem
        head = f"head #{chain.head_seq} {chain.head_hash[:16]}…" if chain.count else "no head"
        return True, f"{chain.count} record(s), chain intact; {head}; {found}"

    def verify_backup(self, live: Anchors) -> tuple[bool, str]:
        """Verify this ledger as a backup of the ledger whose anchors are ``live``: the chain is
        intact and its head is one that the live ledger signed (``pipectl state backup`` anchors
        the backup's own record)."""
        rows = self.store.audit_rows()
        chain = check_chain(rows)
        if chain.problem:
            return False, chain.problem
        anchors, problem = live.read()
        if problem:
            return False, problem
        signed = [a for a in anchors if (a.seq, a.head) == (chain.head_seq, chain.head_hash)]
        if not signed:
            return False, (
                f"the backup's head #{chain.head_seq} {chain.head_hash[:16]}… was never anchored by "
                f"{live.ledger} in {live.file}"
            )
        return True, (
            f"{chain.count} record(s), chain intact; head #{chain.head_seq} {chain.head_hash[:16]}… "
            f"signed by {live.ledger} at {signed[0].time}"
        )

    def record_backup(self, dest: Path, actor: str) -> str:
        """Record a backup about to be written to ``dest`` (the backup then holds this record)."""
        return self.append(_state_record("state-backup", actor, f"backed up the state store to {dest}",
                                         {"file": str(dest)}))

    def record_restore(self, src: Path, previous: Anchor | None, actor: str) -> str:
        """Record that the store was just restored from ``src``; ``previous`` is the highest
        anchor before the restore. The record and its restore anchor both carry that head."""
        rows = self.store.audit_rows()
        restored = {"seq": rows[-1]["seq"], "head": rows[-1]["hash"]} if rows else None
        prev = previous.brief() if previous else None
        what = f"head #{restored['seq']} {str(restored['head'])[:16]}…" if restored else "an empty ledger"
        before = (
            f"the ledger before it ended at #{prev['seq']} {str(prev['head'])[:16]}…"
            if prev else "no anchor before it"
        )
        rec = _state_record(
            "state-restore", actor, f"restored from backup {src} ({what}); {before}",
            {"file": str(src), "restored_head": restored, "previous_anchor": prev},
        )
        return self.append(rec, restore={"previous": prev, "restored": restored})


def _state_record(kind: str, actor: str, message: str, details: dict[str, Any]) -> AuditRecord:
    now = now_utc()
    return AuditRecord(
        run_id=uuid.uuid4().hex,
        kind=kind,  # type: ignore[arg-type]
        release=STATE_RELEASE,
        outcome="succeeded",
        actor=actor,
        message=message,
        details=details,
        started_at=now,
        finished_at=now,
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
