"""The controller runs each Iceberg table's declared maintenance (``tables[].maintenance``, issue
#16 item 5) on its schedule, from the in-sync step of a stage (``controller.engine.steps``).

Level-triggered: whether a run is due is recomputed on every pass from the schedule and the last
run recorded in the state store (``maintenance/<release>/<stage>/<table>``); the next fire is a
``requeue_after``. The attempt is recorded before the first statement (the journal's rule: intent
before the side effect). Every task is idempotent (a second delete below the same cut-off finds
nothing, expiry and orphan removal only remove what is already unneeded), so a run cut short by a
crash or an error is simply run again, after ``RETRY``. Each finished run writes an audit record
(kind ``maintenance``) with what each task did and the snapshot the table was left at.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from controller.audit.ledger import AuditRecord
from controller.audit.snapshots import read_snapshots
from controller.engine.passes import Pass
from controller.engine.stage_ops import StageOps, snapshot_reader
from controller.model.manifest import TableFormat, TableSpec
from controller.model.reasons import Reason
from controller.obs.logging import redact
from controller.plan import maintenance as pm
from controller.plan.desired import StageContext, physical_table
from controller.plan.resources import ResourceKind

RETRY = timedelta(minutes=10)
"""A failed (or interrupted) run is tried again this long after its attempt."""


@runtime_checkable
class MaintenancePort(Protocol):
    """The stage's table adapter when it can run maintenance (``HiveAdapter``)."""

    def maintain(self, task: pm.Task) -> dict[str, str]: ...


@dataclass(frozen=True)
class RunState:
    attempted: datetime | None = None
    succeeded: datetime | None = None
    error: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> RunState:
        if not raw:
            return cls()
        d = json.loads(raw)
        at = {k: datetime.fromisoformat(d[k]) if d.get(k) else None for k in ("attempted", "succeeded")}
        return cls(at["attempted"], at["succeeded"], d.get("error"))

    @property
    def failed(self) -> bool:
        """The last attempt did not succeed (an error, or cut short)."""
        return self.attempted is not None and (self.succeeded is None or self.attempted > self.succeeded)

    def due(self, schedule: str, now: datetime) -> bool:
        if not pm.is_due(schedule, self.succeeded, now):
            return False
        return not self.failed or self.attempted is None or now - self.attempted >= RETRY

    def next_check(self, schedule: str, now: datetime) -> datetime:
        """When to look again: a failed run's retry, if that comes before the next fire."""
        nxt = pm.next_fire(schedule, now)
        if self.failed and self.attempted is not None and pm.is_due(schedule, self.succeeded, now):
            return max(now, min(self.attempted + RETRY, nxt))
        return nxt


def audited_snapshots(records: Sequence[dict[str, Any]], stage: str, table: str) -> list[pm.AuditedSnapshot]:
    """The snapshots of ``table`` the release's audit records (``Ledger.records``) at ``stage`` name."""
    out = []
    for rec in records:
        if rec.get("stage") != stage:
            continue
        for s in rec.get("snapshots") or []:
            if s.get("table") == table and s.get("snapshot_id") and s.get("committed_at"):
                out.append(
                    pm.AuditedSnapshot(
                        s["snapshot_id"],
                        _utc(s["committed_at"]),
                        _utc(rec.get("finished_at") or rec["started_at"]),
                    )
                )
    return out


def _utc(value: str | datetime) -> datetime:
    t = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class Maintenance:
    ops: StageOps
    clock: Callable[[], datetime]

    def run(self, p: Pass, stage: str, ctx: StageContext) -> None:
        """Run every due table's maintenance at ``stage``; requeue the pass for the next one."""
        tables = [
            t for t in p.rel.spec.tables if t.maintenance is not None and t.format is TableFormat.ICEBERG
        ]
        now = _utc(self.clock())
        for t in tables:
            assert t.maintenance is not None
            physical = physical_table(ctx, p.rel, t.name, p.version)
            key = f"maintenance/{p.name}/{stage}/{physical}"
            state = RunState.parse(self.ops.store.kv_get(key))
            if state.due(t.maintenance.schedule, now):
                state = self._run_one(p, stage, ctx, t, physical, key, now, state)
            wait = (state.next_check(t.maintenance.schedule, now) - now).total_seconds()
            p.result.requeue(max(wait, 1.0))

    def _run_one(
        self,
        p: Pass,
        stage: str,
        ctx: StageContext,
        t: TableSpec,
        physical: str,
        key: str,
        now: datetime,
        prior: RunState,
    ) -> RunState:
        self._put(key, RunState(now, prior.succeeded, prior.error))  # the attempt, before any statement
        audited = audited_snapshots(self.ops.ledger.records(p.name), stage, physical)
        tasks = pm.plan_tasks(t, physical, now, audited)
        done: list[dict[str, Any]] = []
        try:
            port = self.ops.backends(ctx, None).adapters[ResourceKind.TABLE]
            if not isinstance(port, MaintenancePort):
                raise TypeError(f"{type(port).__name__} cannot run table maintenance")
            for task in tasks:
                done.append({"task": str(task.kind), "reason": task.reason, **port.maintain(task)})
        except Exception as e:
            error = redact(f"{type(e).__name__}: {e}")[:500]  # a backend's error may quote a credential
            self._put(key, RunState(now, prior.succeeded, error))
            msg = f"{physical}: {error} (after {len(done)} of {len(tasks)} tasks; retried in {RETRY})"
            self.ops.store.add_event(p.name, stage, "Warning", Reason.MAINTENANCE_FAILED, msg)
            self._record(p, stage, ctx, physical, now, done, "Failed", error)
            p.result.errors.append(msg)
            return RunState(now, prior.succeeded, error)
        state = RunState(now, now, None)
        self._put(key, state)
        summary = "; ".join(_describe(d) for d in done) or "nothing to do"
        self.ops.store.add_event(p.name, stage, "Normal", Reason.TABLE_MAINTAINED, f"{physical}: {summary}")
        self._record(p, stage, ctx, physical, now, done, "Succeeded", None)
        return state

    def _put(self, key: str, s: RunState) -> None:
        iso = {
            k: v.isoformat() if v else None
            for k, v in (("attempted", s.attempted), ("succeeded", s.succeeded))
        }
        self.ops.store.kv_put(key, json.dumps({**iso, "error": s.error}))

    def _record(
        self,
        p: Pass,
        stage: str,
        ctx: StageContext,
        physical: str,
        started: datetime,
        done: list[dict[str, Any]],
        outcome: str,
        error: str | None,
    ) -> None:
        rec = AuditRecord(
            run_id=uuid.uuid4().hex,
            kind="maintenance",
            release=p.name,
            version=p.version,
            stage=stage,
            git_commit=p.commit,
            outcome=outcome,
            reason=None if error is None else Reason.MAINTENANCE_FAILED,
            message=error or "",
            actions=[_describe(d) for d in done],
            started_at=started,
            finished_at=_utc(self.clock()),
            details={"table": physical, "tasks": done},
        )
        try:
            rec.snapshots = read_snapshots(snapshot_reader(self.ops.backends(ctx, None)), [physical])
        except Exception as e:  # the record is written without them rather than not at all
            rec.details["snapshots_error"] = redact(f"{type(e).__name__}: {e}")[:300]
        self.ops.ledger.append(rec)


def _describe(d: dict[str, Any]) -> str:
    facts = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("task", "reason") and v not in ("0", ""))
    return f"{d['task']} ({d['reason']}): {facts or 'nothing to do'}"
