"""Key-subset canary serving, pure: which share of the keys the serving view takes from the new
version at each step, and what a gate verdict does to it.

A release whose versioned job declares ``strategy: canary`` with ``keys`` is not switched in one go
at the stage that serves its views: once the new version has soaked (caught up with the stable
one), each pass whose gates pass moves the view to the next step of ``keys.steps`` (the first once
the view serves the new version's rows, ``served_hold``; each no sooner than ``keys.pause`` after
it began serving, ``pause_hold``); gates run again at every step; after
they pass at 100 % the release is promoted (the view is switched as blue/green does,
``rollout.bluegreen.next_segments``). A failed gate rolls back: the split is dropped, so the
view serves every key from the stable version again (one ``CREATE OR REPLACE VIEW``).

A step of keys of one column lists them (``plan.keysplit.pick_keys``: exactly ``round(p * n / 100)`` of
the n keys the engine read from the stable table, the previous step's kept), so the share is exact.
The step is recorded in the stage's rollout document (``store.rollout.KeyStep``) before the view
is converged onto it, so a pass that crashes in between resumes at the same step. Nothing here reads
a clock or a backend: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.model.canary_keys import CanaryKeys
from controller.model.manifest import PipelineRelease, Strategy
from controller.plan.keysplit import KeyStep, listable, pick_keys
from controller.plan.resources import KeySplit, ViewSegment


@dataclass(frozen=True)
class Decision:
    """After gates passed: move to ``state`` (a new step), or ``promote`` (the last step passed)."""

    promote: bool
    state: KeyStep | None = None
    hold: str = ""
    """Why the step stays where it is (``served_hold``, ``pause_hold``); ``state``, if any, is recorded."""
    wait: float = 0.0
    """Seconds until a ``pause_hold`` ends (0: no known end; the engine looks again next pass)."""

    @property
    def message(self) -> str:
        if self.hold:
            return self.hold
        if self.promote or self.state is None:
            return "every key served by the new version passed its gates"
        keys = ", ".join(self.state.columns)
        listed = "" if self.state.keys is None else f", {len(self.state.keys)} listed"
        return f"serving {self.state.percent}% of keys ({keys}{listed}) from {self.state.version}"


def canary_keys(rel: PipelineRelease) -> CanaryKeys | None:
    """The ``keys`` of the release's key-subset canary job (the first that declares them)."""
    for job in rel.spec.streaming_jobs:
        if job.strategy is Strategy.CANARY and job.keys is not None:
            return job.keys
    return None


def lists_keys(current: KeyStep | None, keys: CanaryKeys, version: str) -> bool:
    """Whether the next step may list its keys (``keysplit.pick_keys``), so the engine reads the
    stable table's keys first: keys of one column, and not a run of steps that began on buckets
    (a key served by the new version at a bucket step could fall out of a list)."""
    if not listable(keys.columns):
        return False
    started = current is not None and current.version == version and current.percent < 100
    return not started or (current is not None and current.keys is not None)


def cutover_of(step: KeyStep) -> str | None:
    """The canary side's first timestamp (its segments' latest ``since``) in the step's views."""
    sinces = [seg.since for segs in step.segments.values() for seg in segs[-1:] if seg.since]
    return max(sinces) if sinces else None


def needs_served_check(current: KeyStep | None, version: str) -> bool:
    """Whether the engine must look for the new version's rows from the cutover on before the
    step may move on (``served_hold``): a started step of this version not yet seen served."""
    return current is not None and current.version == version and current.served_at is None


def served_hold(current: KeyStep, served: bool, now: datetime) -> Decision:
    """Hold a step until its gates have passed once while the view serves the new version's rows.

    The cutover is the first minute the new version has complete, so the first step usually starts
    before any of its rows exist: the view then serves only the stable version, and gates passing
    then say nothing of the canary's keys. Not served yet: hold. First seen served: record when, and
    hold once more so the next pass's gates judge served rows (later steps start served)."""
    at = cutover_of(current) or "its cutover"
    share = f"{current.percent}% of keys from {current.version}"
    if not served:
        return Decision(False, None, hold=f"{share}: waiting for its rows from {at} in the view")
    return Decision(
        False,
        current.model_copy(update={"served_at": now}),
        hold=f"{share}: its rows from {at} are served; gates run again",
    )


def pause_hold(current: KeyStep | None, keys: CanaryKeys, version: str, now: datetime) -> Decision | None:
    """Hold a step of ``version`` until ``keys.pause`` has passed since it began serving: the first
    step from when its rows were seen served, a later one from when it was recorded (later steps
    start served). None: no pause, or it is over (the gates that just passed may move the step)."""
    pause = keys.pause_seconds
    if current is None or current.version != version or pause <= 0:
        return None
    began = max(current.since, current.served_at or current.since)
    left = pause - (now - began).total_seconds()
    if left <= 0:
        return None
    until = began + timedelta(seconds=pause)
    return Decision(
        False,
        None,
        hold=f"{current.percent}% of keys from {version}: held {keys.pause} per step, until "
        f"{until:%Y-%m-%d %H:%M:%S}; gates run meanwhile",
        wait=left,
    )


def after_gates_passed(
    current: KeyStep | None,
    keys: CanaryKeys,
    version: str,
    canary_segments: Mapping[str, Sequence[ViewSegment]],
    now: datetime,
    present: Sequence[str] | None = None,
) -> Decision:
    """The next step after the gates passed at ``current`` (None, or another version's: not started).

    ``canary_segments`` are used when the first step starts (later steps keep the recorded ones, so
    the cutover minute never moves while keys are split). ``present``: the stable table's distinct
    keys when ``lists_keys`` (None: the step is a share of the hash buckets)."""
    if current is None or current.version != version:
        segs = {view: list(v) for view, v in canary_segments.items()}
        first = keys.steps[0]
        listed = None if present is None else pick_keys(keys.columns, present, first)
        return Decision(
            False,
            KeyStep(
                version=version,
                percent=first,
                columns=list(keys.columns),
                keys=listed,
                segments=segs,
                since=now,
            ),
        )
    if current.percent >= 100:
        return Decision(True)
    later = [s for s in keys.steps if s > current.percent]
    percent = later[0] if later else 100
    listed = None
    if present is not None and current.keys is not None:
        listed = pick_keys(keys.columns, present, percent, current.keys)
    return Decision(False, current.model_copy(update={"percent": percent, "keys": listed, "since": now}))


def splits(current: KeyStep | None, version: str) -> dict[str, KeySplit]:
    """The view splits ``current`` asks of ``version``'s desired state (none for another version:
    a stage held on its known good, or rolled back, serves every key from it)."""
    if current is None or current.version != version:
        return {}
    return {
        view: KeySplit(
            columns=list(current.columns), percent=current.percent, keys=current.keys, segments=list(segs)
        )
        for view, segs in current.segments.items()
    }
