"""The pure step machine of key-subset canary serving (``controller.rollout.keysteps``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.model.canary_keys import CanaryKeys
from controller.plan.keysplit import pick_keys
from controller.plan.resources import KeySplit, ViewSegment
from controller.rollout.keysteps import (
    after_gates_passed,
    cutover_of,
    lists_keys,
    needs_served_check,
    pause_hold,
    served_hold,
    splits,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEYS = CanaryKeys(columns=["host"], steps=[10, 50, 100])
SEGS = {"db.v": [ViewSegment(table="db.t__v1"), ViewSegment(table="db.t__v2", since="2026-03-02 12:02:00")]}
OTHER = {"db.v": [ViewSegment(table="db.t__v2", since="2026-03-02 13:00:00")]}


def test_steps_advance_in_order_then_promote() -> None:
    d = after_gates_passed(None, KEYS, "2.0.0", SEGS, T0)
    assert not d.promote and d.state is not None
    assert (d.state.percent, d.state.columns, d.state.segments, d.state.since) == (10, ["host"], SEGS, T0)
    assert d.message == "serving 10% of keys (host) from 2.0.0"
    later = T0 + timedelta(minutes=5)
    d2 = after_gates_passed(d.state, KEYS, "2.0.0", OTHER, later)
    # the recorded segments (and so the cutover minute) are kept; only the percent moves
    assert d2.state is not None and (d2.state.percent, d2.state.segments, d2.state.since) == (50, SEGS, later)
    d3 = after_gates_passed(d2.state, KEYS, "2.0.0", OTHER, later)
    assert d3.state is not None and d3.state.percent == 100
    assert after_gates_passed(d3.state, KEYS, "2.0.0", OTHER, later).promote


def test_a_step_of_another_version_starts_over() -> None:
    old = after_gates_passed(None, KEYS, "1.0.0", OTHER, T0).state
    d = after_gates_passed(old, KEYS, "2.0.0", SEGS, T0)
    assert d.state is not None and (d.state.version, d.state.percent, d.state.segments) == ("2.0.0", 10, SEGS)


def test_splits_only_for_the_version_stepping() -> None:
    state = after_gates_passed(None, KEYS, "2.0.0", SEGS, T0).state
    assert splits(state, "2.0.0") == {"db.v": KeySplit(columns=["host"], percent=10, segments=SEGS["db.v"])}
    assert splits(state, "1.0.0") == {} and splits(None, "2.0.0") == {}


HOSTS = [f"host-{i:02d}" for i in range(40)]


def test_listed_steps_record_their_keys_and_keep_them() -> None:
    assert lists_keys(None, KEYS, "2.0.0")
    d = after_gates_passed(None, KEYS, "2.0.0", SEGS, T0, HOSTS)
    assert d.state is not None and d.state.keys == pick_keys(["host"], HOSTS, 10)
    assert d.message == "serving 10% of keys (host, 4 listed) from 2.0.0"
    assert splits(d.state, "2.0.0")["db.v"].keys == d.state.keys
    assert lists_keys(d.state, KEYS, "2.0.0")
    d2 = after_gates_passed(d.state, KEYS, "2.0.0", OTHER, T0, [*HOSTS, "host-new"])
    assert d2.state is not None and d2.state.keys is not None and len(d2.state.keys) == 21
    assert set(d.state.keys or []) <= set(d2.state.keys)
    d3 = after_gates_passed(d2.state, KEYS, "2.0.0", OTHER, T0, HOSTS)
    assert d3.state is not None and (d3.state.percent, d3.state.keys) == (100, None)  # every key


def test_steps_begun_on_buckets_stay_on_buckets() -> None:
    bucket = after_gates_passed(None, KEYS, "2.0.0", SEGS, T0).state  # no keys read: buckets
    assert bucket is not None and bucket.keys is None
    assert not lists_keys(bucket, KEYS, "2.0.0")
    assert lists_keys(bucket, KEYS, "3.0.0")  # another version starts over
    two = CanaryKeys(columns=["host", "metric"], steps=[10, 100])
    assert not lists_keys(None, two, "2.0.0")


def test_a_step_holds_until_the_canarys_rows_are_served_then_once_more() -> None:
    step = after_gates_passed(None, KEYS, "2.0.0", SEGS, T0).state
    assert step is not None and cutover_of(step) == "2026-03-02 12:02:00"
    assert needs_served_check(step, "2.0.0") and not needs_served_check(step, "1.0.0")
    assert not needs_served_check(None, "2.0.0")
    waiting = served_hold(step, False, T0)
    assert (waiting.promote, waiting.state) == (False, None)
    assert waiting.message == "10% of keys from 2.0.0: waiting for its rows from 2026-03-02 12:02:00 in the view"
    later = T0 + timedelta(seconds=40)
    seen = served_hold(step, True, later)
    assert not seen.promote and seen.state is not None and seen.state.served_at == later
    assert seen.state.percent == 10 and seen.message.endswith("are served; gates run again")
    assert not needs_served_check(seen.state, "2.0.0")
    nxt = after_gates_passed(seen.state, KEYS, "2.0.0", OTHER, later)
    assert nxt.state is not None and nxt.state.served_at == later  # later steps start served


def test_a_pause_holds_each_step_from_when_it_began_serving() -> None:
    keys = CanaryKeys(columns=["host"], steps=[10, 50, 100], pause="1m")
    first = after_gates_passed(None, keys, "2.0.0", SEGS, T0).state
    assert first is not None
    served_at = T0 + timedelta(seconds=40)
    seen = served_hold(first, True, served_at).state
    assert seen is not None
    # the first step's pause counts from when its rows were seen served, not from when it was recorded
    held = pause_hold(seen, keys, "2.0.0", T0 + timedelta(seconds=70))
    assert held is not None and not held.promote and held.state is None and held.wait == 30.0
    assert held.message == (
        "10% of keys from 2.0.0: held 1m per step, until 2026-03-02 12:01:40; gates run meanwhile"
    )
    assert pause_hold(seen, keys, "2.0.0", served_at + timedelta(seconds=60)) is None
    # a later step counts from when it was recorded (it starts served)
    later = served_at + timedelta(seconds=60)
    second = after_gates_passed(seen, keys, "2.0.0", OTHER, later).state
    assert second is not None and second.percent == 50
    held = pause_hold(second, keys, "2.0.0", later + timedelta(seconds=59))
    assert held is not None and held.wait == 1.0
    assert pause_hold(second, keys, "2.0.0", later + timedelta(seconds=60)) is None
    # no pause declared, or another version's step: nothing held
    assert pause_hold(second, KEYS, "2.0.0", later) is None
    assert pause_hold(second, keys, "3.0.0", later) is None and pause_hold(None, keys, "2.0.0", later) is None
