"""Blue/green decisions: green's start, catch-up before the switch, cutover minute, view segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.adapters.spark import JobProgress
from controller.engine.backends import progress_view
from controller.plan.resources import ViewSegment
from controller.rollout.bluegreen import (
    catch_up_wait,
    cutover,
    green_start_offsets,
    green_start_time,
    next_segments,
)

T = datetime(2026, 11, 26, 21, 28, 0, tzinfo=UTC)
TRIGGER = timedelta(seconds=5)


def test_green_behind_blue_waits_and_says_by_how_much() -> None:
    msg = catch_up_wait(T - timedelta(minutes=2), T, TRIGGER)
    assert msg == "watermark 21:26:00 behind blue's 21:28:00"


def test_green_within_one_trigger_of_blue_is_caught_up() -> None:
    assert catch_up_wait(T - timedelta(seconds=4), T, TRIGGER) == ""
    assert catch_up_wait(T + timedelta(seconds=30), T, TRIGGER) == ""


def test_no_blue_watermark_never_blocks_and_no_green_watermark_waits() -> None:
    assert catch_up_wait(None, None, TRIGGER) == ""
    assert catch_up_wait(T, None, TRIGGER) == ""
    assert catch_up_wait(None, T, TRIGGER) == "no watermark yet; blue's is 21:28:00"


def _progress(watermark: str | None) -> JobProgress:
    return JobProgress(name="j", query_id="q", run_id="r", batch_id=3, watermark=watermark, timestamp=T)


def test_progress_view_ignores_spark_epoch_zero_watermark() -> None:
    assert progress_view(None) is None
    assert progress_view(_progress(None)).watermark is None  # type: ignore[union-attr]
    assert progress_view(_progress("1970-01-01T00:00:00.000Z")).watermark is None  # type: ignore[union-attr]
    assert progress_view(_progress("2026-11-26T21:28:00.000Z")).watermark == T  # type: ignore[union-attr]


def test_green_starts_a_replay_window_before_blue_never_past_blue() -> None:
    assert green_start_time(T, None, 300) == T - timedelta(minutes=5)
    assert green_start_time(T, T - timedelta(minutes=1), 300) == T - timedelta(minutes=6)
    offsets = green_start_offsets(
        at_time={"t": {0: 40, 1: -1, 2: None}},
        ends={"t": {0: 100, 1: 50, 2: 70}},
        blue_done={"t": {0: 30}},
    )
    # partition 0: at-time 40 but blue only processed 30; 1 and 2: no record that late -> the end
    assert offsets == {"t": {"0": 30, "1": 50, "2": 70}}


def test_cutover_is_the_minute_after_greens_latest_start() -> None:
    starts = [T + timedelta(seconds=10), T - timedelta(minutes=3)]
    assert cutover(starts, T) == T + timedelta(minutes=2)
    assert cutover([], T) == T + timedelta(minutes=1)


def test_next_segments_appends_green_once() -> None:
    views = [("db.v", "db.t__v1", "db.t__v2")]
    first = next_segments({}, views, T)
    assert first == {"db.v": [ViewSegment(table="db.t__v1"), ViewSegment(table="db.t__v2", since="2026-11-26 21:28:00")]}
    # a pass that recorded the switch, crashed and runs it again appends nothing twice
    assert next_segments(first, views, T + timedelta(minutes=5)) == first
