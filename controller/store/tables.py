"""The state store's tables (SQLAlchemy Core), one ``MetaData``: release status, the apply journal,
run history, events, approvals, known-good versions, the audit ledger, the backfill ledger and a
key/value table. ``controller.store.db.Store`` reads and writes them; ``controller.store.tokens``
adds its own table to the same metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

releases = Table(
    "releases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("status", Text, nullable=False),
    Column("spec_digest", String(80)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("release", String(128), nullable=False),
    Column("stage", String(64), nullable=False),
    Column("plan_digest", String(80), nullable=False),
    Column("action_id", String(512), nullable=False),
    Column("action", Text, nullable=False),
    Column("state", String(16), nullable=False),  # started | done | failed | skipped | waiting
    Column("message", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("plan_digest", "action_id", name="uq_journal_plan_action"),
)
# every pass asks for its release-stage's ``waiting`` rows (``Store.journal_settle``): without
# it that is a scan of the whole journal, 4.8 ms per release at 1,000 converged releases
JOURNAL_WAITING_INDEX = Index(
    "ix_journal_release_stage_state", journal.c.release, journal.c.stage, journal.c.state
)
LATER_INDEXES = (JOURNAL_WAITING_INDEX,)
"""Indexes added after stores were in use: created on an existing store when it is opened."""

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("release", String(128), nullable=False, index=True),
    Column("stage", String(64)),
    Column("version", String(64)),
    Column("kind", String(32), nullable=False),
    Column("commit", String(64)),
    Column("outcome", String(32)),
    Column("reason", String(64)),
    Column("message", Text),
    Column("gates", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("release", String(128), nullable=False, index=True),
    Column("stage", String(64)),
    Column("type", String(16), nullable=False),  # Normal | Warning
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
)

approvals = Table(  # an approval binds (release, stage, version, revision digest) to a principal
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("release", String(128), nullable=False),
    Column("stage", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("revision", String(80), nullable=False),
    Column("approver", String(128), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    UniqueConstraint("release", "stage", "version", "revision", name="uq_approval_revision"),
)

known_good = Table(
    "known_good",
    metadata,
    Column("release", String(128), primary_key=True),
    Column("stage", String(64), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("commit", String(64)),
    Column("manifest", Text, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("record_id", String(64), nullable=False, unique=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("release", String(128), index=True),
    Column("kind", String(32), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("record", Text, nullable=False),
)

backfills = Table(
    "backfills",
    metadata,
    Column("release", String(128), primary_key=True),
    Column("stage", String(64), primary_key=True),
    Column("partition", String(64), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("run_id", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("rows", BigInteger),  # one day of the seed's peak stream is ~10^11 events
    Column("checksum", String(80)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

kv = Table(
    "kv",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),
)
