"""jobkit.lifecycle pieces that need no Spark (the whole contract runs in test_adapter_spark)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.jobkit.lifecycle import STOP_MARKER, StopRequested, stop_guard, write_json_atomic


def test_stop_guard_refuses_to_start_a_batch_once_the_stop_file_exists(tmp_path: Path) -> None:
    ran: list[int] = []

    def fn(df: Any, batch_id: int) -> None:
        ran.append(batch_id)

    stop = tmp_path / "stop"
    guarded = stop_guard(fn, str(stop))
    guarded(None, 0)
    stop.touch()
    with pytest.raises(StopRequested, match=STOP_MARKER):
        guarded(None, 1)
    assert ran == [0]
    assert stop_guard(fn, None) is fn


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "d" / "status.json"
    write_json_atomic(target, {"batchId": 1})
    write_json_atomic(target, {"batchId": 2})
    assert json.loads(target.read_text()) == {"batchId": 2}
    assert [p.name for p in target.parent.iterdir()] == ["status.json"]
