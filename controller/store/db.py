"""State store (its tables: ``controller.store.tables``): release status, the apply journal, run
history, events, approvals, known-good versions, the audit ledger and the backfill ledger.

Everything here is rebuildable from git + backends except the audit ledger and approvals, which are
history: back them up (``pipectl state backup``). SQLAlchemy Core keeps SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    create_engine,
    delete,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from controller.store.fencing import check_fence
from controller.store.kvcache import KvReadCache, WaitingCache
from controller.store.tables import (
    LATER_INDEXES,
    approvals,
    audit,
    backfills,
    events,
    journal,
    known_good,
    kv,
    metadata,
    releases,
    runs,
)
from controller.store.timeouts import SQLITE_BUSY_TIMEOUT, connect_args

DEFAULT_STATE_DIR = Path(".pipectl")
DEFAULT_URL = f"sqlite:///{DEFAULT_STATE_DIR / 'state.db'}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything pipectl stores is UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


class Store:
    """The one interface to the controller's state."""

    def __init__(self, url: str = DEFAULT_URL):
        self.url = url
        self.fencing_token: int | None = None  # the leader's epoch: journal writes check it (fencing.py)
        self.fence_guard: Callable[[], None] | None = None  # and this check too (fencing.check_fence)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True, connect_args=connect_args(url))
        self.kv_cache = KvReadCache()  # controller-owned keys, read once per pass (preload_kv)
        self.status_cache = KvReadCache()  # release → status JSON, read once per pass (preload_pass)
        self.waiting_cache = WaitingCache()  # the journal's waiting rows, read once per pass
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _set_aside_unbound_approvals(self.engine)
        metadata.create_all(self.engine)
        for index in LATER_INDEXES:  # create_all adds no index to a table that exists already
            index.create(self.engine, checkfirst=True)

    @contextmanager
    def tx(self, fenced: bool = False) -> Iterator[Connection]:
        """A transaction; ``fenced``: a leader's write, refused (``FencedOut``) once it no longer leads."""
        with self.engine.begin() as conn:
            if fenced:
                check_fence(conn, self.fencing_token, guard=self.fence_guard)
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """One round trip (``SELECT 1``); raises what the driver raises when the store is down."""
        with self.tx() as c:
            c.execute(select(1))

    # --- release status ----------------------------------------------------------------------

    def get_status(self, release: str) -> dict[str, Any] | None:
        cached, text = self.status_cache.get(release)
        if cached:
            return json.loads(text) if text else None
        with self.tx() as c:
            row = c.execute(select(releases.c.status).where(releases.c.name == release)).first()
        return json.loads(row[0]) if row else None

    def release_names(self) -> list[str]:
        """Names of the releases with a stored status, sorted (no status is parsed)."""
        with self.tx() as c:
            return [r[0] for r in c.execute(select(releases.c.name).order_by(releases.c.name))]

    def list_statuses(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(text) for name, text in sorted(self._status_texts().items())}

    def put_status(self, release: str, status: dict[str, Any], spec_digest: str | None = None) -> None:
        now = utcnow()
        # key order is kept: a status lists its stages in rollout order
        text = json.dumps(status, default=str)
        with self.tx(fenced=True) as c:
            n = c.execute(
                update(releases)
                .where(releases.c.name == release)
                .values(status=text, spec_digest=spec_digest, updated_at=now)
            ).rowcount
            if not n:
                c.execute(
                    insert(releases).values(
                        name=release, status=text, spec_digest=spec_digest, updated_at=now
                    )
                )
        self.status_cache.wrote(release, text)

    def delete_status(self, release: str) -> None:
        with self.tx(fenced=True) as c:
            c.execute(delete(releases).where(releases.c.name == release))
        self.status_cache.wrote(release, None)

    # --- journal -----------------------------------------------------------------------------

    def journal_state(self, plan_digest: str, action_id: str) -> str | None:
        with self.tx() as c:
            row = c.execute(
                select(journal.c.state).where(
                    and_(journal.c.plan_digest == plan_digest, journal.c.action_id == action_id)
                )
            ).first()
        return row[0] if row else None

    def journal_begin(
        self, run_id: str, release: str, stage: str, plan_digest: str, action_id: str, action: str
    ) -> None:
        now = utcnow()
        self.waiting_cache.wrote()
        with self.tx(fenced=True) as c:
            n = c.execute(
                update(journal)
                .where(and_(journal.c.plan_digest == plan_digest, journal.c.action_id == action_id))
                .values(state="started", run_id=run_id, started_at=now, finished_at=None, message=None)
            ).rowcount
            if not n:
                c.execute(
                    insert(journal).values(
                        run_id=run_id,
                        release=release,
                        stage=stage,
                        plan_digest=plan_digest,
                        action_id=action_id,
                        action=action,
                        state="started",
                        started_at=now,
                    )
                )

    def journal_end(self, plan_digest: str, action_id: str, state: str, message: str = "") -> None:
        self.waiting_cache.wrote()
        with self.tx(fenced=True) as c:
            c.execute(
                update(journal)
                .where(and_(journal.c.plan_digest == plan_digest, journal.c.action_id == action_id))
                .values(state=state, message=message, finished_at=utcnow())
            )

    SETTLED = "applied; seen in place by a later pass"

    def journal_settle(self, release: str, stage: str, planned: set[str]) -> int:
        """Close the stage's ``waiting`` rows whose action a later plan no longer needs: the apply
        went through and a later observe found its effect in place; none to close: one read only."""
        known = self.waiting_cache.get(release, stage)
        if known is not None and known <= planned:
            return 0
        waiting = and_(journal.c.release == release, journal.c.stage == stage, journal.c.state == "waiting")
        with self.tx() as c:  # a converged pass has none: no fenced write transaction
            if all(r.action_id in planned for r in c.execute(select(journal.c.action_id).where(waiting))):
                return 0
        with self.tx(fenced=True) as c:
            rows = c.execute(select(journal.c.id, journal.c.action_id).where(waiting)).all()
            ids = [r.id for r in rows if r.action_id not in planned]
            if ids:
                self.waiting_cache.wrote()
                c.execute(
                    update(journal)
                    .where(journal.c.id.in_(ids))
                    .values(state="done", message=self.SETTLED, finished_at=utcnow())
                )
        return len(ids)

    def journal_rows(self, release: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        q = select(journal).order_by(journal.c.id)
        if release:
            q = q.where(journal.c.release == release)
        if run_id:
            q = q.where(journal.c.run_id == run_id)
        with self.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    # --- runs (history) ----------------------------------------------------------------------

    def run_start(
        self, run_id: str, release: str, stage: str | None, version: str | None, kind: str, commit: str | None
    ) -> None:
        with self.tx() as c:
            c.execute(
                insert(runs).values(
                    run_id=run_id,
                    release=release,
                    stage=stage,
                    version=version,
                    kind=kind,
                    commit=commit,
                    started_at=utcnow(),
                )
            )

    def run_end(
        self,
        run_id: str,
        outcome: str,
        reason: str | None = None,
        message: str = "",
        gates: Sequence[dict[str, Any]] = (),
    ) -> None:
        with self.tx() as c:
            c.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(
                    outcome=outcome,
                    reason=reason,
                    message=message,
                    gates=json.dumps(list(gates)),
                    finished_at=utcnow(),
                )
            )

    def history(self, release: str, limit: int = 200) -> list[dict[str, Any]]:
        q = select(runs).where(runs.c.release == release).order_by(runs.c.started_at.desc()).limit(limit)
        with self.tx() as c:
            out = []
            for r in c.execute(q):
                d = dict(r._mapping)
                d["gates"] = json.loads(d["gates"]) if d.get("gates") else []
                d["started_at"] = _aware(d["started_at"])
                d["finished_at"] = _aware(d["finished_at"])
                out.append(d)
        return out

    # --- events ------------------------------------------------------------------------------

    def add_event(self, release: str, stage: str | None, type_: str, reason: str, message: str) -> None:
        with self.tx() as c:
            c.execute(
                insert(events).values(
                    ts=utcnow(), release=release, stage=stage, type=type_, reason=reason, message=message
                )
            )

    def recent_events(self, release: str, limit: int = 20) -> list[dict[str, Any]]:
        q = select(events).where(events.c.release == release).order_by(events.c.id.desc()).limit(limit)
        with self.tx() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
        for r in rows:
            r["ts"] = _aware(r["ts"])
        return list(reversed(rows))

    # --- approvals and known-good ------------------------------------------------------------

    def approve(self, release: str, stage: str, version: str, approver: str, revision: str) -> bool:
        """Record an approval of (release, stage, version, revision); False when already recorded."""
        key = and_(
            approvals.c.release == release,
            approvals.c.stage == stage,
            approvals.c.version == version,
            approvals.c.revision == revision,
        )
        with self.tx() as c:
            if c.execute(select(approvals.c.id).where(key)).first():
                return False
            c.execute(
                insert(approvals).values(
                    release=release,
                    stage=stage,
                    version=version,
                    revision=revision,
                    approver=approver,
                    ts=utcnow(),
                )
            )
        return True

    def approval(self, release: str, stage: str, version: str, revision: str | None) -> dict[str, Any] | None:
        """The approval of exactly this version and revision digest (None: no revision, none)."""
        if not revision:
            return None
        key = and_(
            approvals.c.release == release,
            approvals.c.stage == stage,
            approvals.c.version == version,
            approvals.c.revision == revision,
        )
        with self.tx() as c:
            row = c.execute(select(approvals).where(key)).first()
        return dict(row._mapping) if row else None

    def set_known_good(
        self, release: str, stage: str, version: str, commit: str | None, manifest: str
    ) -> None:
        with self.tx(fenced=True) as c:
            c.execute(
                delete(known_good).where(and_(known_good.c.release == release, known_good.c.stage == stage))
            )
            c.execute(
                insert(known_good).values(
                    release=release,
                    stage=stage,
                    version=version,
                    commit=commit,
                    manifest=manifest,
                    ts=utcnow(),
                )
            )

    def known_good(self, release: str, stage: str) -> dict[str, Any] | None:
        with self.tx() as c:
            row = c.execute(
                select(known_good).where(and_(known_good.c.release == release, known_good.c.stage == stage))
            ).first()
        return dict(row._mapping) if row else None

    # --- key/value ---------------------------------------------------------------------------

    def kv_get(self, key: str) -> str | None:
        cached, value = self.kv_cache.get(key)
        if cached:
            return value
        with self.tx() as c:
            row = c.execute(select(kv.c.value).where(kv.c.key == key)).first()
        return row[0] if row else None

    def kv_put(self, key: str, value: str) -> None:
        with self.tx(fenced=True) as c:
            if not c.execute(update(kv).where(kv.c.key == key).values(value=value)).rowcount:
                c.execute(insert(kv).values(key=key, value=value))
        self.kv_cache.wrote(key, value)

    def preload_pass(self) -> None:
        """Read every release's status and the journal's waiting rows in two statements for this
        pass; ``get_status`` and ``journal_settle`` answer from them until the next preload (only
        the leader writes either, and its own writes go through this ``Store``: ``store.kvcache``)."""
        self.status_cache.load(("",), lambda _: self._status_texts())
        self.waiting_cache.load(self._waiting_rows)

    def end_pass(self) -> None:
        """The sweep is over: forget what the preloads read (at 1,000 releases ~10 MiB of rollout
        documents held between sweeps); until the next preload every read goes to the store."""
        self.kv_cache.clear()
        self.status_cache.clear()
        self.waiting_cache.clear()

    def _status_texts(self) -> dict[str, str]:
        with self.tx() as c:
            return {r[0]: r[1] for r in c.execute(select(releases.c.name, releases.c.status))}

    def _waiting_rows(self) -> dict[tuple[str, str], frozenset[str]]:
        out: dict[tuple[str, str], set[str]] = {}
        cols = (journal.c.release, journal.c.stage, journal.c.action_id)
        q = select(*cols).where(journal.c.state == "waiting")
        with self.tx() as c:
            for r in c.execute(q):
                out.setdefault((r[0], r[1]), set()).add(r[2])
        return {k: frozenset(v) for k, v in out.items()}

    def preload_kv(self, prefixes: Sequence[str]) -> None:
        """Read every row under ``prefixes`` in one statement; ``kv_get`` answers them from memory
        until the next preload. Only for keys this process alone writes (``store.kvcache``)."""
        self.kv_cache.load(prefixes, lambda ps: self.kv_prefix(*ps))

    # --- audit ledger (hashing: controller.audit.chain; anchors: controller.audit.anchor) -----

    def audit_append(
        self, record_id: str, ts: datetime, release: str, kind: str, text: str, hash_fn: Any
    ) -> dict[str, Any]:
        """Append one record and return its row. The last row is read inside the same serialized
        write transaction (``_audit_write``), so concurrent appenders never chain onto the same
        record; ``hash_fn(row)`` hashes every column of the new row (seq = last seq + 1)."""
        with self._audit_write() as c:
            last = c.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
            row: dict[str, Any] = {
                "seq": last[0] + 1 if last else 1, "record_id": record_id, "ts": ts, "release": release,
                "kind": kind, "prev_hash": last[1] if last else "0" * 64, "record": text,
            }
            row["hash"] = hash_fn(row)
            c.execute(insert(audit).values(**row))
        return row

    @contextmanager
    def _audit_write(self) -> Iterator[Connection]:
        """A write transaction holding the ledger's write lock from its first read. SQLite: ``BEGIN
        IMMEDIATE`` on a connection whose driver-level implicit (deferred) BEGIN is off (AUTOCOMMIT
        here means SQLAlchemy/pysqlite emit no BEGIN of their own); a second writer waits (busy
        timeout) instead of reading the same head. PostgreSQL: ``LOCK TABLE audit IN EXCLUSIVE
        MODE`` (readers go on, appenders queue; the read after it sees the latest commit)."""
        if self.engine.dialect.name != "sqlite":
            with self.tx() as c:
                if c.dialect.name == "postgresql":
                    c.exec_driver_sql("LOCK TABLE audit IN EXCLUSIVE MODE")
                yield c
            return
        with self.engine.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT")
            c.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                with suppress(Exception):  # SQLite may have rolled back already
                    c.exec_driver_sql("ROLLBACK")
                raise
            c.exec_driver_sql("COMMIT")

    def audit_rows(self, release: str | None = None) -> list[dict[str, Any]]:
        q = select(audit).order_by(audit.c.seq)
        if release:
            q = q.where(audit.c.release == release)
        with self.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def kv_prefix(self, *prefixes: str) -> dict[str, str]:
        """Every row whose key starts with one of ``prefixes``, in one statement."""
        if not prefixes:
            return {}
        match = or_(*(self._prefix_match(p) for p in prefixes))
        with self.tx() as c:
            return {r[0]: r[1] for r in c.execute(select(kv.c.key, kv.c.value).where(match))}

    def _prefix_match(self, prefix: str) -> ColumnElement[bool]:
        """``key`` starts with ``prefix``. On SQLite also as a key range, which its primary-key
        index answers: SQLite never uses an index for ``LIKE`` (case-insensitive by default), so
        each prefix read scanned every row, values included (7.4 ms a read at 1,000 releases
        against 0.28 ms as a range, issue #17). The range is exact in SQLite's binary collation; PostgreSQL's
        may be linguistic, so there only ``LIKE`` decides."""
        like = kv.c.key.startswith(prefix, autoescape=True)
        if self.engine.dialect.name != "sqlite" or not prefix or ord(prefix[-1]) >= 0x10FFFF:
            return like
        after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return and_(kv.c.key >= prefix, kv.c.key < after, like)

    # --- backfill ledger (rules live in controller.plan.backfill) ---------------------------

    def backfill_rows(
        self, release: str, stage: str | None = None, partitions: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Ledger entries of ``release`` (optionally one stage, some partitions), by stage and partition."""
        q = select(backfills).where(backfills.c.release == release)
        if stage is not None:
            q = q.where(backfills.c.stage == stage)
        if partitions is not None:
            q = q.where(backfills.c.partition.in_(list(partitions)))
        with self.tx() as c:
            rows = [dict(r._mapping) for r in c.execute(q.order_by(backfills.c.stage, backfills.c.partition))]
        for r in rows:
            r["updated_at"] = _aware(r["updated_at"])
        return rows

    def backfill_put(
        self,
        release: str,
        stage: str,
        partition: str,
        *,
        version: str,
        run_id: str,
        status: str,
        attempts: int,
        rows: int | None = None,
        checksum: str | None = None,
    ) -> None:
        """Insert or replace the ledger entry of one partition."""
        values = {
            "version": version, "run_id": run_id, "status": status, "attempts": attempts,
            "rows": rows, "checksum": checksum, "updated_at": utcnow(),
        }
        key = and_(
            backfills.c.release == release, backfills.c.stage == stage, backfills.c.partition == partition
        )
        with self.tx() as c:
            if not c.execute(update(backfills).where(key).values(**values)).rowcount:
                c.execute(
                    insert(backfills).values(release=release, stage=stage, partition=partition, **values)
                )

    # --- backup ------------------------------------------------------------------------------

    def backup(self, dest: Path) -> None:
        """Copy the whole store to a SQLite file (consistent snapshot via the SQLite backup API)."""
        if self.engine.dialect.name != "sqlite":
            raise NotImplementedError("backup of non-SQLite stores: use pg_dump (see docs/operations.md)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        raw = self.engine.raw_connection()
        try:
            import sqlite3

            target = sqlite3.connect(str(dest))
            try:
                raw.driver_connection.backup(target)  # type: ignore[union-attr]
            finally:
                target.close()
        finally:
            raw.close()

    @staticmethod
    def restore(src: Path, url: str = DEFAULT_URL) -> None:
        if not url.startswith("sqlite:///"):
            raise NotImplementedError("restore into non-SQLite stores: use pg_restore")
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        shutil.copyfile(src, path)


def _set_aside_unbound_approvals(engine: Engine) -> None:
    """A store from before approvals were bound to a revision: its approvals table (no revision
    column) is renamed ``approvals_unbound`` and kept as history; none of its rows counts."""
    from sqlalchemy import inspect

    insp = inspect(engine)
    if not insp.has_table("approvals") or insp.has_table("approvals_unbound"):
        return
    if "revision" not in {c["name"] for c in insp.get_columns("approvals")}:
        with engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE approvals RENAME TO approvals_unbound")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={round(SQLITE_BUSY_TIMEOUT * 1000)}")
    cur.close()
