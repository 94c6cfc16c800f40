"""Blue/green decisions for streaming jobs, pure: where green starts, when it has caught up with
blue, the minute the serving view cuts over, and the view segments after the switch.

The engine gathers the facts (blue's progress, Kafka offsets, the recorded start positions) and
persists the results; nothing here reads a clock or a backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from controller.plan.resources import ViewSegment
from controller.rollout.context import ProgressView


def watermark_of(progress: ProgressView | None) -> datetime | None:
    """A job's event-time watermark from its last progress, or None before the first one."""
    return progress.watermark if progress is not None else None


def catch_up_wait(green: datetime | None, blue: datetime | None, tolerance: timedelta) -> str:
    """Why a green job is not caught up with blue yet ("" once it is).

    Switching the serving view to green earlier would make dashboards lose the minutes blue has
    closed and green has not, so the switch waits until green's watermark reaches blue's (within
    one trigger interval: the two jobs cut their micro-batches at different instants).
    """
    if blue is None:
        return ""
    if green is None:
        return f"no watermark yet; blue's is {blue:%H:%M:%S}"
    if green + tolerance >= blue:
        return ""
    return f"watermark {green:%H:%M:%S} behind blue's {blue:%H:%M:%S}"


def green_start_time(
    now: datetime, blue_watermark: datetime | None, replay_window_seconds: float
) -> datetime:
    """Green replays ``replay_window`` before blue's position (its watermark, or now before one)."""
    anchor = now if blue_watermark is None else min(now, blue_watermark)
    return anchor - timedelta(seconds=replay_window_seconds)


def green_start_offsets(
    at_time: Mapping[str, Mapping[int, int | None]],
    ends: Mapping[str, Mapping[int, int]],
    blue_done: Mapping[str, Mapping[int, int]],
) -> dict[str, dict[str, int]]:
    """Per topic and partition: the first offset at the start time, never past where blue is.

    ``at_time`` is Kafka's offsets-for-times answer (-1 or None: no record that late, so start at
    the end); ``blue_done`` is what blue has processed (green must not skip what blue has not
    written yet).
    """
    out: dict[str, dict[str, int]] = {}
    for topic, parts in ends.items():
        row: dict[str, int] = {}
        for p, end in parts.items():
            off = at_time.get(topic, {}).get(p, -1)
            if off is None or off < 0:
                off = end
            done = blue_done.get(topic, {})
            if p in done:
                off = min(off, done[p])
            row[str(p)] = int(off)
        out[topic] = row
    return out


def ceil_minute(t: datetime) -> datetime:
    base = t.replace(second=0, microsecond=0)
    return base if base == t else base + timedelta(minutes=1)


def cutover(start_times: Sequence[datetime], now: datetime) -> datetime:
    """The first minute green has complete: the minute after its (latest) start position."""
    base = max(start_times) if start_times else now
    return ceil_minute(base.astimezone(UTC)) + timedelta(minutes=1)


def next_segments(
    current: Mapping[str, Sequence[ViewSegment]],
    views: Sequence[tuple[str, str, str]],
    switch_at: datetime,
) -> dict[str, list[ViewSegment]]:
    """View segments after switching each view (name, blue table, green table) to green.

    Idempotent: a view whose last segment already reads green's table is left as it is, so a pass
    that crashed after recording the switch and runs it again appends nothing twice.
    """
    out: dict[str, list[ViewSegment]] = {}
    for view, blue, green in views:
        segs = list(current.get(view) or [ViewSegment(table=blue)])
        if segs[-1].table != green:
            segs.append(ViewSegment(table=green, since=switch_at.strftime("%Y-%m-%d %H:%M:%S")))
        out[view] = segs
    return out
