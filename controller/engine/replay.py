"""Replays: run a release's streaming job version from the Kafka offsets of a timestamp into its own
checkpoint and output table (names and arguments: ``controller.plan.replay``).

``ReplayEngine.prepare`` asks Kafka for the offsets of ``from`` (and ``to``) on every source topic
(``offsets_for_times``: per partition the first offset whose record timestamp is at or after the
time, the end offset when there is none) and derives the replay's job and table from the
release's desired job and table for the version. ``start`` creates the database and table
through the Hive adapter (idempotent) and starts the job through the Spark adapter: a replay
already running with the same spec is left alone, a finished one is started again on its own
checkpoint (which then has nothing new to do for a bounded replay). ``wait`` follows a bounded
replay (``--available-now`` / ``--to-time``) until the job exits; ``stop`` ends an unbounded one
after its current batch. Each start, finish and stop writes an audit record of kind ``replay``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from controller.audit.ledger import Artifact, AuditRecord, Ledger, Lineage
from controller.engine.backends import StageBackends
from controller.model import iceberg
from controller.model.errors import PipectlError
from controller.model.identifiers import quote_presto, split_qualified
from controller.plan.actions import Action, Op
from controller.plan.replay import (
    ENDING_OFFSETS,
    count_between,
    replay_job,
    replay_tag,
    supports_option,
)
from controller.plan.resources import DatabaseResource, ResourceKind, StreamingJobResource, TableResource

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReplayPlan:
    release: str
    stage: str
    version: str
    job: StreamingJobResource
    tables: list[TableResource]
    topics: list[str]
    from_ms: int
    to_ms: int | None
    starting: dict[str, dict[int, int]]
    ending: dict[str, dict[int, int]] | None
    latest: dict[str, dict[int, int]]
    bounded: bool

    @property
    def tag(self) -> str:
        return replay_tag(self.from_ms, self.to_ms)

    @property
    def records(self) -> int:
        """Records the replay reads: up to the end offsets of ``to``, else up to the current end."""
        return count_between(self.starting, self.ending if self.ending is not None else self.latest)

    def describe(self) -> list[str]:
        out = [
            f"job {self.job.name} ({self.version}) on checkpoint {self.job.checkpoint}",
            f"into {', '.join(t.name for t in self.tables)}",
        ]
        for t in self.topics:
            parts = sorted(self.starting.get(t, {}))
            start = ", ".join(f"{p}:{self.starting[t][p]}" for p in parts)
            out.append(f"{t} from [{start}]")
            if self.ending is not None:
                out.append(f"{t} to   [{', '.join(f'{p}:{self.ending[t][p]}' for p in parts)}] (exclusive)")
        mode = "until the end offsets of --to-time" if self.ending is not None else (
            "until the current end offsets (available-now)" if self.bounded else "continuously, until stopped"
        )
        out.append(f"{self.records} record(s) to replay so far; runs {mode}")
        return out


@dataclass
class ReplayResult:
    plan: ReplayPlan
    started: bool
    message: str
    finished: bool | None = None
    succeeded: bool | None = None
    rows: int | None = None
    progress: dict[str, Any] | None = field(default=None)


class ReplayEngine:
    def __init__(
        self,
        backends: StageBackends,
        ledger: Ledger | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.be = backends
        self.ledger = ledger
        self.clock = clock
        self.sleep = sleep

    # --- plan ---------------------------------------------------------------------------------

    def prepare(
        self,
        release: str,
        stage: str,
        job: StreamingJobResource,
        tables: Sequence[TableResource],
        topics: Sequence[str],
        entrypoint_source: bytes,
        *,
        from_ms: int,
        to_ms: int | None = None,
        available_now: bool = False,
    ) -> ReplayPlan:
        if to_ms is not None and not supports_option(entrypoint_source, ENDING_OFFSETS):
            raise PipectlError(
                f"--to-time needs the job to stop at given offsets, and {job.entrypoint} has no "
                f"{ENDING_OFFSETS} option: add it (a JSON {{topic: {{partition: offset}}}} of exclusive "
                "per-partition ends, applied as a filter on the Kafka source's partition/offset columns "
                "and used with --available-now), or replay with --available-now (up to the current end)"
            )
        starting: dict[str, dict[int, int]] = {}
        ending: dict[str, dict[int, int]] | None = {} if to_ms is not None else None
        latest: dict[str, dict[int, int]] = {}
        for t in topics:
            starting[t] = dict(self.be.kafka.offsets_for_times(t, from_ms))
            latest[t] = dict(self.be.kafka.end_offsets(t))
            if ending is not None and to_ms is not None:
                ending[t] = dict(self.be.kafka.offsets_for_times(t, to_ms))
        tag = replay_tag(from_ms, to_ms)
        rjob, rtables = replay_job(
            job, tables, tag=tag, starting=starting, ending=ending, available_now=available_now
        )
        return ReplayPlan(
            release, stage, job.version, rjob, rtables, list(topics), from_ms, to_ms, starting, ending,
            latest, bounded=available_now or to_ms is not None,
        )

    # --- run ----------------------------------------------------------------------------------

    def start(
        self, plan: ReplayPlan, *, code: Sequence[Artifact] = (), actor: str = "pipectl"
    ) -> ReplayResult:
        started_at = datetime.now(UTC)
        for db in sorted({split_qualified(t.name)[0] for t in plan.tables}):
            database = DatabaseResource(name=db, owner=plan.job.owner)
            self.be.hive.apply(self._action(ResourceKind.DATABASE, database))
        for t in plan.tables:
            self.be.hive.apply(self._action(ResourceKind.TABLE, t))
        result = self.be.spark.apply(self._action(ResourceKind.STREAMING_JOB, plan.job))
        log.info("replay.started", job=plan.job.name, changed=result.changed, message=result.message)
        res = ReplayResult(plan, result.changed, result.message)
        self._audit(plan, "started" if result.changed else "running", result.message, started_at, code, actor)
        return res

    def wait(
        self, res: ReplayResult, *, timeout_s: float = 1800.0, poll: float = 2.0,
        code: Sequence[Artifact] = (), actor: str = "pipectl",
    ) -> ReplayResult:
        """Follow a bounded replay until its job exits; then count the replay table's rows."""
        started_at = datetime.now(UTC)
        name = res.plan.job.name
        deadline = self.clock() + timeout_s
        runner: Any = self.be.spark.runner
        while True:
            state = runner.list([name]).get(name)
            if state is None:
                raise PipectlError(f"replay job {name} is not registered")
            if not state.alive:
                break
            if self.clock() >= deadline:
                res.finished = False
                res.message = f"still running after {timeout_s:.0f}s (log: {state.record.log_file})"
                return res
            self.sleep(poll)
        res.finished = True
        res.progress = state.progress
        ending = _job_ending(Path(state.record.log_file))
        res.succeeded = ending == "ended"
        res.message = f"job {name} {ending or 'exited without a final word'} (log: {state.record.log_file})"
        if res.succeeded:
            res.rows = self.rows(res.plan)
        self._audit(
            res.plan, "completed" if res.succeeded else "failed",
            res.message + (f"; {res.rows} row(s) in the replay table" if res.rows is not None else ""),
            started_at, code, actor,
        )
        return res

    def stop(self, plan: ReplayPlan, *, code: Sequence[Artifact] = (), actor: str = "pipectl") -> bool:
        started_at = datetime.now(UTC)
        stopped = self.be.spark.apply(
            self._action(ResourceKind.STREAMING_JOB, plan.job.model_copy(update={"running": False}))
        )
        self._audit(plan, "stopped", stopped.message, started_at, code, actor)
        return stopped.changed

    def rows(self, plan: ReplayPlan) -> int:
        total = 0
        for t in plan.tables:
            db, table = split_qualified(t.name)
            catalog = iceberg.reading_catalog(t.format) or self.be.presto.catalog
            rel = f"{quote_presto(catalog)}.{quote_presto(db)}.{quote_presto(table)}"
            sql = f"SELECT count(*) FROM {rel}"  # noqa: S608 - checked, quoted identifiers
            total += int(self.be.presto.query(sql, op="replay_rows")[0][0])
        return total

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _action(kind: ResourceKind, desired: Any) -> Action:
        return Action(op=Op.CREATE, kind=kind, name=desired.name, reason="replay", desired=desired)

    def _audit(
        self, plan: ReplayPlan, outcome: str, message: str, started_at: datetime,
        code: Sequence[Artifact], actor: str,
    ) -> None:
        if self.ledger is None:
            return
        self.ledger.append(
            AuditRecord(
                run_id=uuid.uuid4().hex,
                kind="replay",
                release=plan.release,
                version=plan.version,
                stage=plan.stage,
                code=list(code),
                lineage=Lineage(
                    inputs=[f"kafka:{t}" for t in plan.topics],
                    outputs=[f"hive:{t.name}" for t in plan.tables],
                ),
                plan_summary=plan.describe(),
                actions=[f"StreamingJob/{plan.job.name}: {outcome}"],
                outcome=outcome,
                message=message,
                actor=actor,
                started_at=started_at,
                finished_at=datetime.now(UTC),
            )
        )


def _job_ending(log_file: Path) -> str | None:
    """``ended`` / ``stopped`` / ``failed`` from the job's last lifecycle line (controller.jobkit)."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("pipectl: query "):
            return line.rsplit(" ", 1)[-1] if line.endswith((" ended", " stopped")) else "failed"
        if line.startswith("=== pipectl: starting "):
            return None
    return None
