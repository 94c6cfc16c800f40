"""The Confluent wire format's header (``controller.jobkit.wire``) and the job frame's count of
undecodable records (``kafka_job.DecodeTally``, written to the status file by ``lifecycle``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.spark_records import JobProgress
from controller.engine.backends import progress_view
from controller.jobkit.kafka_job import DecodeTally, base_parser, check_args
from controller.jobkit.lifecycle import ProgressWriter
from controller.jobkit.wire import HEADER_BYTES, WireError, frame, parse_header


def test_frame_is_magic_byte_then_big_endian_id_then_body() -> None:
    assert frame(1, b"body") == b"\x00\x00\x00\x00\x01body"
    assert frame(0x01020304, b"") == b"\x00\x01\x02\x03\x04"
    assert parse_header(frame(258, b"\x02xy")) == (258, b"\x02xy")
    # the same bytes Confluent's serializers write: struct ">bI"
    assert frame(7, b"z") == struct.pack(">bI", 0, 7) + b"z"


@pytest.mark.parametrize("value", [None, b"", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00\x01abc", b"\x12host-0001"])
def test_not_the_wire_format_is_a_magic_error(value: bytes | None) -> None:
    with pytest.raises(WireError) as e:
        parse_header(value)
    assert e.value.reason == "magic"


def test_header_only_is_an_empty_body() -> None:
    assert parse_header(b"\x00\x00\x00\x00\x05") == (5, b"")
    assert HEADER_BYTES == 5


def test_frame_refuses_ids_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        frame(-1, b"")
    with pytest.raises(ValueError, match="out of range"):
        frame(2**31, b"")


def test_tally_sums_batches_per_reason() -> None:
    t = DecodeTally()
    assert t.snapshot() == {"undecodableRecords": 0, "undecodableByReason": {}}
    t.add({"magic": 2, "body": 1})
    t.add({"magic": 1, "unknown_id": 4})
    assert t.snapshot() == {"undecodableRecords": 8, "undecodableByReason": {"body": 1, "magic": 3, "unknown_id": 4}}


class _Query:
    """What ``ProgressWriter`` reads of a StreamingQuery: its last progress."""

    def __init__(self, progress: dict[str, Any]) -> None:
        self.lastProgress = progress


def test_status_file_carries_the_count_and_the_controller_reads_it(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    progress = {"id": "q", "runId": "r", "batchId": 3, "timestamp": "2026-12-05T10:00:00.000Z"}
    t = DecodeTally()
    t.add({"unknown_id": 2})
    ProgressWriter(_Query(progress), str(status), t.snapshot).poll()  # type: ignore[arg-type]
    written = json.loads(status.read_text())
    assert written["pipectl"] == {"undecodableRecords": 2, "undecodableByReason": {"unknown_id": 2}}
    assert JobProgress.from_json(written).undecodable_records == 2
    view = progress_view(JobProgress.from_json(written))
    assert view is not None and view.undecodable_records == 2  # what the streamingHealth gate reads
    # a job that does not count reports nothing (the gate tells the two apart)
    assert JobProgress.from_json(progress).undecodable_records is None


def _args(*extra: str) -> list[str]:
    return ["--bootstrap-servers", "k:9092", "--topic", "t", "--table", "db.t", "--checkpoint", "c",
            "--query-name", "q", "--version", "1", *extra]


def test_registry_and_subject_go_together(tmp_path: Path) -> None:
    p = base_parser("j", "d", tmp_path / "s.avsc")
    ok = check_args(p.parse_args(_args("--schema-registry", "http://h/sr", "--subject", "t-value")))
    assert (ok.schema_registry, ok.subject) == ("http://h/sr", "t-value")
    assert check_args(p.parse_args(_args())).schema_registry is None
    with pytest.raises(SystemExit, match="go together"):
        check_args(p.parse_args(_args("--schema-registry", "http://h/sr")))
