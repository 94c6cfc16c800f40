"""A blue/green switch waits until green's watermark has reached blue's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controller.engine.reconciler import catch_up_wait, watermark_of

T = datetime(2026, 11, 26, 21, 28, 0, tzinfo=UTC)
TRIGGER = timedelta(seconds=5)


@dataclass
class Progress:
    watermark: str | None


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


def test_watermark_of_ignores_spark_epoch_zero_and_missing_progress() -> None:
    assert watermark_of(None) is None
    assert watermark_of(Progress(None)) is None
    assert watermark_of(Progress("1970-01-01T00:00:00.000Z")) is None
    assert watermark_of(Progress("2026-11-26T21:28:00.000Z")) == T
