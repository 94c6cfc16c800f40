"""``rollout.inplace``: where a new in-place version starts reading, and the fresh checkpoint the
known good restarts on after that version is rolled back."""

from __future__ import annotations

from controller.rollout.inplace import EARLIEST, PINNED, fresh_checkpoint, start_offsets


def test_the_committed_position_is_recorded_not_the_end_offsets() -> None:
    """The new version resumes from the old checkpoint, so it reads from the committed position:
    restarting the known good from the end offsets would lose what lies between."""
    committed = {"t": {0: 100, 1: 250}}
    ends = {"t": {0: 400, 1: 400}}
    assert start_offsets(committed, ends) == {"t": {"0": 100, "1": 250}}


def test_a_partition_the_old_job_never_processed_starts_at_the_earliest_offset() -> None:
    out = start_offsets({"t": {0: 10}}, {"t": {0: 50, 1: 50}, "u": {0: 7}})
    assert out == {"t": {"0": 10, "1": EARLIEST}, "u": {"0": EARLIEST}}


def test_a_committed_position_past_the_end_is_capped_at_the_end() -> None:
    """A topic recreated or truncated under the job: never ask Spark for an offset that does not exist."""
    assert start_offsets({"t": {0: 900}}, {"t": {0: 300}}) == {"t": {"0": 300}}


def test_the_fresh_checkpoint_is_deterministic_and_new_per_failed_version_and_offsets() -> None:
    base = "/ckpt/dev/metrics/agg"
    a = fresh_checkpoint(base, "1.1.0", '{"t":{"0":100}}')
    assert a == fresh_checkpoint(base, "1.1.0", '{"t":{"0":100}}')  # a resumed restore: same directory
    assert a.startswith(f"{base}{PINNED}v1_1_0-") and a != base
    assert a != fresh_checkpoint(base, "1.2.0", '{"t":{"0":100}}')
    assert a != fresh_checkpoint(base, "1.1.0", '{"t":{"0":101}}')


def test_a_second_move_is_a_sibling_of_the_stage_checkpoint_not_nested() -> None:
    first = fresh_checkpoint("/ckpt/dev/metrics/agg/", "1.1.0", "{}")
    second = fresh_checkpoint(first, "1.2.0", "{}")
    assert second.startswith("/ckpt/dev/metrics/agg" + PINNED + "v1_2_0-")
    assert second.count(PINNED) == 1
