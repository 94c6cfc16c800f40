"""Apply a plan in dependency waves, journaling each action before and after it runs.

Crash safety: every action is written to the journal as ``started`` before the backend is touched
and ``done`` after. Before each action the executor re-observes that one resource and re-runs the
diff rule: if the live state already matches (an earlier pass finished it, then crashed before
journaling), the action is recorded as ``skipped`` instead of applied again. Appliers are idempotent
as well, so an action interrupted mid-way is safe to run again.

Waves: actions of the same kind rank run in parallel (bounded); a wave starts only when the one
before it finished without error. A stop event is honoured between actions (graceful SIGTERM).

Fencing: with a fencing token on the store (``Store.fencing_token``, the PostgreSQL or Lease elector's epoch)
the journal refuses the writes of a controller that no longer leads (``FencedOut``); the executor
then runs nothing more and sets its stop event (tests: ``tests/unit/engine/test_executor_fencing.py``).

Destructive actions awaiting approval (``Action.pending``) are never run; an approved one
(``controller.plan.approvals``) is re-checked like any other: it is still needed while its rule
finds anything to do for the resource (a refusal included — that is what the approval lifted).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby

import structlog

from controller.adapters.base import Adapter
from controller.model.errors import (
    ErrorClass,
    NotReadyYet,
    PipectlError,
    PlanRefusedError,
    TransientBackendError,
    error_class,
)
from controller.model.reasons import Reason
from controller.obs import metrics
from controller.plan.actions import Action, Approval, DiffContext, Op, Plan
from controller.plan.resources import KIND_ORDER, ResourceKind
from controller.plan.rules import RULES
from controller.store.db import Store
from controller.store.fencing import FencedOut

log = structlog.get_logger(__name__)


@dataclass
class ActionOutcome:
    action: Action
    state: str  # done | skipped | waiting | failed | not-run
    message: str = ""
    seconds: float = 0.0
    transient_reason: Reason | None = None  # set when a later pass may succeed (TransientBackendError.reason)
    error_class: ErrorClass | None = None
    retry_after: float | None = None
    """``waiting``: applied, not visible in the backend yet; look again after this many seconds."""
    fenced: FencedOut | None = None
    """``not-run``: the journal refused this controller's fencing token (it no longer leads)."""


@dataclass
class ApplyReport:
    outcomes: list[ActionOutcome] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def waiting(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.state == "waiting"]

    @property
    def applied(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.state == "done"]

    @property
    def backend_seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)


def intent_digest(release: str, stage: str, version: str, manifest_digest: str) -> str:
    """Identity of what a pass is converging to; the journal is keyed by it."""
    return hashlib.sha256(json.dumps([release, stage, version, manifest_digest]).encode()).hexdigest()[:32]


def waves(actions: list[Action]) -> list[list[Action]]:
    """Groups of actions that may run in parallel, in order: one group per kind (creates and
    updates in kind order, then deletes in reverse), split further where an action depends on
    another of its group (``Action.depends_on``: a transform reading another transform's output
    runs in a later wave than it)."""
    rank = {k: i for i, k in enumerate(KIND_ORDER)}

    def key(a: Action) -> tuple[int, int]:
        return (1, -rank[a.kind]) if a.op is Op.DELETE else (0, rank[a.kind])

    out: list[list[Action]] = []
    for _, g in groupby(actions, key=key):
        group = list(g)
        deps = {a.name: [d for d in a.depends_on if d != a.name] for a in group}
        level = {a.name: 0 for a in group}
        for _ in group:  # longest path; the plan has no cycles (validation refuses them)
            for a in group:
                level[a.name] = max([level[a.name]] + [level[d] + 1 for d in deps[a.name] if d in level])
        for lv in sorted(set(level.values())):
            out.append([a for a in group if level[a.name] == lv])
    return out


class Executor:
    def __init__(
        self,
        store: Store,
        adapters: Mapping[ResourceKind, Adapter],
        max_parallel: int = 4,
        stop: threading.Event | None = None,
    ):
        self.store = store
        self.adapters = adapters
        self.max_parallel = max_parallel
        self.stop = stop or threading.Event()

    def apply(self, plan: Plan, run_id: str, intent: str, ctx: DiffContext | None = None) -> ApplyReport:
        if plan.refused:
            raise PlanRefusedError("; ".join(a.describe() for a in plan.refused))
        ctx = ctx or DiffContext()
        report = ApplyReport()
        for wave in waves(plan.applicable):
            if self.stop.is_set():
                report.interrupted = True
                report.outcomes += [ActionOutcome(a, "not-run", "controller stopping") for a in wave]
                continue
            if report.failed or report.waiting:
                why = "an earlier wave failed" if report.failed else "an earlier wave is not visible yet"
                report.outcomes += [ActionOutcome(a, "not-run", why) for a in wave]
                continue
            if len(wave) == 1 or self.max_parallel == 1:
                outs = [self._one(plan, a, run_id, intent, ctx) for a in wave]
            else:
                with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(wave))) as pool:
                    outs = list(pool.map(lambda a: self._one(plan, a, run_id, intent, ctx), wave))
            report.outcomes += outs
            report.interrupted |= any(isinstance(o.fenced, FencedOut) for o in outs)
        return report

    def _still_needed(self, action: Action, ctx: DiffContext) -> bool:
        """Re-observe the one resource and re-run its rule: is this action still needed?"""
        adapter = self.adapters[action.kind]
        live = adapter.observe(action.kind, [action.name]).get(action.name)
        rule = RULES[action.kind]
        if action.op is Op.DELETE:
            return live is not None
        follow_up = rule(action.desired, live, ctx)
        if action.approval is Approval.APPROVED:
            return bool(follow_up)
        return any(a.op is not Op.REFUSE for a in follow_up)

    def _one(self, plan: Plan, action: Action, run_id: str, intent: str, ctx: DiffContext) -> ActionOutcome:
        t0 = time.monotonic()
        try:
            return self._journaled(plan, action, run_id, intent, ctx)
        except FencedOut as e:  # from any journal write, a failure's record included
            # Another controller leads now: write nothing more (not even this row's end: the row is
            # the new leader's) and stop this controller.
            self.stop.set()
            log.error("journal write fenced out; stopping", run_id=run_id, release=plan.release,
                      stage=plan.stage, action=action.id, error=str(e), error_type="FencedOut")
            return ActionOutcome(action, "not-run", str(e), time.monotonic() - t0, fenced=e)

    def _journaled(
        self, plan: Plan, action: Action, run_id: str, intent: str, ctx: DiffContext
    ) -> ActionOutcome:
        if self.stop.is_set():
            return ActionOutcome(action, "not-run", "controller stopping")
        bound = log.bind(run_id=run_id, release=plan.release, stage=plan.stage, action=action.id)
        previous = self.store.journal_state(intent, action.id)
        t0 = time.monotonic()
        try:
            if previous == "started":
                bound.warning("resuming an action interrupted by a crash; re-checking live state first")
            if not self._still_needed(action, ctx):
                self.store.journal_begin(
                    run_id, plan.release, plan.stage, intent, action.id, action.model_dump_json()
                )
                self.store.journal_end(intent, action.id, "skipped", "live state already converged")
                bound.info("action skipped: already converged", previous=previous)
                metrics.record_action(str(action.kind), "skipped")
                return ActionOutcome(action, "skipped", "already converged", time.monotonic() - t0)
            self.store.journal_begin(
                run_id, plan.release, plan.stage, intent, action.id, action.model_dump_json()
            )
            result = self.adapters[action.kind].apply(action)
            self.store.journal_end(intent, action.id, "done", result.message)
            bound.info("action applied", changed=result.changed, message=result.message)
            metrics.record_action(str(action.kind), "done")
            return ActionOutcome(action, "done", result.message, time.monotonic() - t0)
        except FencedOut:
            raise  # not the action's failure: handled by _one
        except NotReadyYet as e:
            # Applied, but the backend does not show it yet: the next pass re-checks live state (and
            # skips the action once it is visible).
            self.store.journal_end(intent, action.id, "waiting", str(e))
            bound.info("action applied; waiting for the backend to report it", detail=str(e))
            metrics.record_action(str(action.kind), "waiting")
            took = time.monotonic() - t0
            cls = ErrorClass.TRANSIENT
            return ActionOutcome(action, "waiting", str(e), took, e.reason, cls, e.retry_after)
        except Exception as e:  # any error, pipectl's or not, fails this action only
            msg = str(e) if isinstance(e, PipectlError) else f"{type(e).__name__}: {e}"
            self.store.journal_end(intent, action.id, "failed", msg)
            bound.error("action failed", error=msg)
            metrics.record_action(str(action.kind), "failed")
            reason = e.reason if isinstance(e, TransientBackendError) else None
            retry = e.retry_after if isinstance(e, TransientBackendError) else None
            return ActionOutcome(action, "failed", msg, time.monotonic() - t0, reason, error_class(e), retry)
