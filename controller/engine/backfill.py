"""Backfills: run a release's Airflow DAG once per ``dt`` partition, with a ledger and retries.

``BackfillEngine.run`` carries out the chunk plan of ``controller.plan.backfill``:

1. read the partitions' ledger entries from the state store and plan the chunks (skip what the
   same version already completed, resume runs a dead backfill left running, retry failures);
2. trigger up to ``parallelism`` runs at a time through ``AirflowAdapter.trigger_run`` with the
   deterministic run id and logical date of the chunk's attempt (a run that already exists —
   a lost ledger, a crash between the ledger write and the trigger — is adopted, not re-run:
   Airflow answers 409 and pipectl polls the existing run);
3. poll the runs' states; a failed run is retried as the next attempt (new run id, see
   ``controller.plan.backfill``) until ``1 + retries`` attempts were made in this backfill;
4. after a success, measure the output partition through Presto — ``count(*)`` and an
   order-independent checksum (Presto's ``checksum()`` over every data column: a sum of
   per-row hashes) — and record version, run id, status, attempts, rows and checksum in the
   ledger (``backfills`` table). Skipped partitions are measured again (``verify``) and the
   result says whether they still match the ledger;
5. write one audit record (kind ``backfill``) with the lineage and every partition's outcome.

The ledger row is written *before* a run is triggered (``running``, with the run id), so a
backfill killed at any point is resumed by the next identical one without a second run.
Airflow calls per chunk: one ``get_dag_run`` before triggering (to tell a new run from an
adopted one), one ``post_dag_run``, then one ``get_dag_run`` per poll.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from controller.audit.ledger import Artifact, AuditRecord, Ledger, Lineage
from controller.model.errors import BackendError, ConflictError, PipectlError
from controller.model.identifiers import presto_string_literal, quote_presto, split_qualified
from controller.plan.backfill import (
    Chunk,
    Decision,
    LedgerEntry,
    Status,
    failed,
    next_attempt,
    plan_chunks,
    started,
    succeeded,
)
from controller.plan.resources import DagResource, ResourceKind
from controller.store.db import Store

log = structlog.get_logger(__name__)

TERMINAL_OK = "success"
TERMINAL_FAILED = "failed"


class AirflowRuns(Protocol):
    """What a backfill needs from ``controller.adapters.airflow.AirflowAdapter``."""

    def trigger_run(
        self, dag_id: str, run_id: str, conf: dict[str, Any], logical_date: datetime | None = None
    ) -> str: ...

    def run_state(self, dag_id: str, run_id: str) -> str | None: ...

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Any]: ...


class PrestoQueries(Protocol):
    """What a backfill needs from ``controller.adapters.presto.PrestoClient``."""

    catalog: str

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True)
class BackfillRequest:
    """One backfill: which DAG at which stage and version, which partitions, and how."""

    release: str
    stage: str
    dag_id: str
    version: str
    partitions: Sequence[str]
    conf: dict[str, Any] = field(default_factory=dict)
    output_table: str | None = None
    partition_column: str = "dt"
    parallelism: int = 2
    retries: int = 2
    force: bool = False
    verify: bool = True
    timeout_s: float = 3600.0
    git_commit: str | None = None
    code: Sequence[Artifact] = ()
    inputs: Sequence[str] = ()
    actor: str = "pipectl"

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise PipectlError("--parallelism must be at least 1")
        if self.retries < 0:
            raise PipectlError("--retries must be 0 or more")


@dataclass
class ChunkOutcome:
    """What became of one partition in this backfill."""

    partition: str
    decision: Decision
    status: str  # success | failed | skipped | running (at the timeout) | pending (never started)
    run_id: str
    attempts: int
    runs_started: int = 0
    rows: int | None = None
    checksum: str | None = None
    message: str = ""

    def describe(self) -> str:
        counts = f" rows={self.rows} checksum={self.checksum}" if self.rows is not None else ""
        tail = f" ({self.message})" if self.message else ""
        return (
            f"{self.partition}: {self.status} run={self.run_id} attempts={self.attempts} "
            f"started={self.runs_started}{counts}{tail}"
        )


@dataclass
class BackfillReport:
    backfill_id: str
    request: BackfillRequest
    chunks: list[Chunk]
    outcomes: list[ChunkOutcome]
    started_at: datetime
    finished_at: datetime

    @property
    def runs_started(self) -> int:
        return sum(o.runs_started for o in self.outcomes)

    @property
    def failed(self) -> list[ChunkOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def unfinished(self) -> list[ChunkOutcome]:
        return [o for o in self.outcomes if o.status in ("running", "pending")]

    @property
    def outcome(self) -> str:
        if self.failed:
            return "failed"
        if self.unfinished:
            return "incomplete"
        return "succeeded"


Listener = Callable[[str, str, str], None]
"""``listener(event, partition, detail)``; events: skip, start, adopt, resume, retry, success, failed,
timeout. The CLI draws its progress bar from them."""


@dataclass
class _Active:
    chunk: Chunk
    entry: LedgerEntry
    outcome: ChunkOutcome
    tries: int  # attempts made (or adopted) in this backfill
    terminal: str | None = None  # known at start: an adopted finished run, or a trigger refused
    not_started: str = ""  # why the attempt could not start


class BackfillEngine:
    def __init__(
        self,
        store: Store,
        airflow: AirflowRuns,
        presto: PrestoQueries | None,
        *,
        ledger: Ledger | None = None,
        poll_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.airflow = airflow
        self.presto = presto
        self.ledger = ledger
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep
        self._columns: dict[str, list[str]] = {}

    # --- planning ---------------------------------------------------------------------------------

    def ledger_entries(self, req: BackfillRequest) -> dict[str, LedgerEntry]:
        rows = self.store.backfill_rows(req.release, req.stage, list(req.partitions))
        return {
            r["partition"]: LedgerEntry(
                partition=r["partition"],
                version=r["version"],
                run_id=r["run_id"],
                status=Status(r["status"]),
                attempts=int(r["attempts"] or 0),
                rows=r["rows"],
                checksum=r["checksum"],
            )
            for r in rows
        }

    def plan(self, req: BackfillRequest) -> list[Chunk]:
        entries = self.ledger_entries(req)
        return plan_chunks(req.release, req.version, req.partitions, entries, force=req.force)

    def deployed_dag(self, dag_id: str) -> DagResource | None:
        """The DAG as Airflow reports it (version from its ``version:`` tag), None when not active."""
        live = self.airflow.observe(ResourceKind.DAG, [dag_id]).get(dag_id)
        return live if isinstance(live, DagResource) and live.reported else None

    # --- running ----------------------------------------------------------------------------------

    def run(self, req: BackfillRequest, listener: Listener | None = None) -> BackfillReport:
        notify = listener or (lambda _e, _p, _d: None)
        started_at = datetime.now(UTC)
        backfill_id = uuid.uuid4().hex
        ledger = self.ledger_entries(req)
        chunks = plan_chunks(req.release, req.version, req.partitions, ledger, force=req.force)
        log.info(
            "backfill.start",
            id=backfill_id,
            release=req.release,
            stage=req.stage,
            dag=req.dag_id,
            version=req.version,
            partitions=len(chunks),
            run=sum(c.decision is not Decision.SKIP for c in chunks),
        )
        outcomes: dict[str, ChunkOutcome] = {}
        queue: deque[tuple[Chunk, int]] = deque()
        for ch in chunks:
            entry = ledger.get(ch.partition)
            if ch.decision is Decision.SKIP:
                assert entry is not None
                outcomes[ch.partition] = self._skipped(req, ch, entry)
                notify("skip", ch.partition, outcomes[ch.partition].message)
            else:
                outcomes[ch.partition] = ChunkOutcome(
                    ch.partition, ch.decision, "running", ch.run_id, ch.attempt
                )
                queue.append((ch, 0))

        active: dict[str, _Active] = {}
        deadline = self.clock() + req.timeout_s
        while queue or active:
            while queue and len(active) < req.parallelism:
                ch, tries = queue.popleft()
                act = self._start(req, ch, ledger.get(ch.partition), outcomes[ch.partition], tries, notify)
                ledger[ch.partition] = act.entry
                if act.terminal is None:
                    active[ch.partition] = act
                else:
                    self._settle(req, act, act.terminal, queue, ledger, notify)
            if not active:
                continue
            for part in list(active):
                act = active[part]
                state = self._poll(req, act, notify)
                if state in (TERMINAL_OK, TERMINAL_FAILED):
                    del active[part]
                    self._settle(req, act, state, queue, ledger, notify)
            if active and self.clock() >= deadline:
                for act in active.values():
                    act.outcome.message = (
                        f"still {self.airflow.run_state(req.dag_id, act.chunk.run_id) or 'unknown'} after "
                        f"{req.timeout_s:.0f}s; run the same backfill again to resume it"
                    )
                    notify("timeout", act.chunk.partition, act.outcome.message)
                for ch, _ in queue:
                    outcomes[ch.partition].status = "pending"
                    outcomes[ch.partition].message = "not started before the timeout"
                break
            if active:
                self.sleep(self.poll_interval)

        report = BackfillReport(
            backfill_id, req, chunks, [outcomes[p] for p in req.partitions], started_at, datetime.now(UTC)
        )
        self._audit(report)
        log.info(
            "backfill.end",
            id=backfill_id,
            outcome=report.outcome,
            runs_started=report.runs_started,
            failed=[o.partition for o in report.failed],
        )
        return report

    def _start(
        self,
        req: BackfillRequest,
        ch: Chunk,
        entry: LedgerEntry | None,
        outcome: ChunkOutcome,
        tries: int,
        notify: Listener,
    ) -> _Active:
        """Record the chunk as running, then trigger (or adopt, or resume) its run."""
        new = started(entry, ch, req.version)
        self._put(req, new)
        outcome.run_id, outcome.attempts = ch.run_id, new.attempts
        act = _Active(ch, new, outcome, tries + 1)
        if ch.decision is Decision.RESUME:
            notify("resume", ch.partition, ch.run_id)
            return act  # the poll triggers it again if the run never reached Airflow
        existing = self.airflow.run_state(req.dag_id, ch.run_id)
        if existing is None:
            self._trigger(req, act, notify)
            return act
        notify("adopt", ch.partition, f"{ch.run_id} ({existing})")
        if existing in (TERMINAL_OK, TERMINAL_FAILED):
            act.terminal = existing
        return act

    def _trigger(self, req: BackfillRequest, act: _Active, notify: Listener) -> None:
        ch = act.chunk
        conf = {
            **req.conf,
            "partition": ch.partition,
            "pipectl": {
                "kind": "backfill",
                "release": req.release,
                "stage": req.stage,
                "version": req.version,
                "attempt": ch.attempt,
            },
        }
        try:
            state = self.airflow.trigger_run(req.dag_id, ch.run_id, conf, ch.logical_date)
        except (ConflictError, BackendError) as e:
            # Another run holds this logical date (e.g. the DAG's own scheduled run): this attempt
            # cannot start; the next one runs a second later. Airflow refused the run (bad conf,
            # unreachable after retries): recorded as a failed attempt, never left "running".
            act.terminal, act.not_started = TERMINAL_FAILED, f"{ch.run_id} not started: {e}"
            return
        act.outcome.runs_started += 1
        notify("start" if ch.attempt == 1 else "retry", ch.partition, f"{ch.run_id} ({state})")

    def _poll(self, req: BackfillRequest, act: _Active, notify: Listener) -> str:
        state = self.airflow.run_state(req.dag_id, act.chunk.run_id)
        if state is None:
            # Recorded as running but unknown to Airflow: the trigger never happened.
            self._trigger(req, act, notify)
            return act.terminal or "queued"
        return state

    def _settle(
        self,
        req: BackfillRequest,
        act: _Active,
        state: str,
        queue: deque[tuple[Chunk, int]],
        ledger: dict[str, LedgerEntry],
        notify: Listener,
    ) -> None:
        """A run ended (or could not start): record it; retry a failure while attempts are left."""
        ch, out = act.chunk, act.outcome
        if state == TERMINAL_OK:
            rows, checksum = self.measure(req, ch.partition)
            entry = succeeded(act.entry, rows, checksum)
            self._put(req, entry)
            ledger[ch.partition] = entry
            out.status, out.rows, out.checksum = "success", rows, checksum
            notify("success", ch.partition, f"{rows} rows, checksum {checksum}")
            return
        entry = failed(act.entry)
        self._put(req, entry)
        ledger[ch.partition] = entry
        reason = act.not_started or f"run {ch.run_id} failed"
        if act.tries < 1 + req.retries:
            retry = next_attempt(req.release, req.version, ch)
            out.status, out.message = "running", f"{reason}; retrying as {retry.run_id}"
            notify("retry-scheduled", ch.partition, out.message)
            queue.appendleft((retry, act.tries))
            return
        out.status, out.message = "failed", f"{reason}; {act.tries} attempt(s) in this backfill"
        notify("failed", ch.partition, out.message)

    def _skipped(self, req: BackfillRequest, ch: Chunk, entry: LedgerEntry) -> ChunkOutcome:
        out = ChunkOutcome(
            ch.partition,
            ch.decision,
            "skipped",
            entry.run_id,
            entry.attempts,
            rows=entry.rows,
            checksum=entry.checksum,
            message="done before",
        )
        if req.verify and req.output_table:
            rows, checksum = self.measure(req, ch.partition)
            if (rows, checksum) == (entry.rows, entry.checksum):
                out.message = "done before; output unchanged (rows and checksum match the ledger)"
            else:
                out.message = (
                    f"done before, but the output CHANGED since: now {rows} rows, checksum {checksum} "
                    "(use --force to rebuild it)"
                )
        return out

    # --- output measurement ------------------------------------------------------------------------

    def measure(self, req: BackfillRequest, partition: str) -> tuple[int | None, str | None]:
        """``count(*)`` and an order-independent checksum of the output partition (None without one)."""
        if not req.output_table or self.presto is None:
            return None, None
        db, table = split_qualified(req.output_table)
        rel = f"{quote_presto(self.presto.catalog)}.{quote_presto(db)}.{quote_presto(table)}"
        cols = self._data_columns(rel, req.partition_column)
        row = ", ".join(quote_presto(c) for c in cols)
        # Identifiers are checked and quoted, the partition is a quoted literal.
        sql = (
            f"SELECT count(*), to_hex(checksum(ROW({row}))) FROM {rel} "  # noqa: S608
            f"WHERE {quote_presto(req.partition_column)} = {presto_string_literal(partition)}"
        )
        [(rows, checksum)] = self.presto.query(sql, op="backfill_checksum")
        return int(rows), (str(checksum).lower() if checksum is not None else "")

    def _data_columns(self, rel: str, partition_column: str) -> list[str]:
        if rel not in self._columns:
            assert self.presto is not None
            cols = [str(r[0]) for r in self.presto.query(f"SHOW COLUMNS FROM {rel}", op="backfill_columns")]
            if partition_column not in cols:
                raise PipectlError(f"{rel} has no column {partition_column!r} (columns: {', '.join(cols)})")
            self._columns[rel] = [c for c in cols if c != partition_column]
        return self._columns[rel]

    # --- records ----------------------------------------------------------------------------------

    def _put(self, req: BackfillRequest, e: LedgerEntry) -> None:
        self.store.backfill_put(
            req.release,
            req.stage,
            e.partition,
            version=e.version,
            run_id=e.run_id,
            status=str(e.status),
            attempts=e.attempts,
            rows=e.rows,
            checksum=e.checksum,
        )

    def _audit(self, report: BackfillReport) -> None:
        if self.ledger is None:
            return
        req = report.request
        outputs = [f"hive:{req.output_table}"] if req.output_table else []
        parts = list(req.partitions)
        span = f"{parts[0]}..{parts[-1]}" if parts else "-"
        self.ledger.append(
            AuditRecord(
                run_id=report.backfill_id,
                kind="backfill",
                release=req.release,
                version=req.version,
                stage=req.stage,
                git_commit=req.git_commit,
                code=list(req.code),
                lineage=Lineage(inputs=list(req.inputs), outputs=outputs),
                plan_summary=[f"{c.partition}: {c.decision} {c.run_id} ({c.reason})" for c in report.chunks],
                actions=[o.describe() for o in report.outcomes],
                outcome=report.outcome,
                message=(
                    f"backfill of {req.dag_id} {span} ({len(parts)} partition(s)): "
                    f"{report.runs_started} run(s) started, "
                    f"{sum(o.status == 'skipped' for o in report.outcomes)} skipped, "
                    f"{len(report.failed)} failed, {len(report.unfinished)} unfinished"
                ),
                actor=req.actor,
                started_at=report.started_at,
                finished_at=report.finished_at,
            )
        )
