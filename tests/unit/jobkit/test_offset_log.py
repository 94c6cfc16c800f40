"""The batch end offsets the Iceberg sink records in each snapshot (``pipectl.end-offsets``), read
from Spark's checkpoint offset log: ``controller.jobkit.hadoop_fs.source_end_offsets``."""

from __future__ import annotations

import json

from controller.jobkit.hadoop_fs import source_end_offsets
from controller.jobkit.iceberg_sink import END_OFFSETS_KEY, snapshot_properties

# the shape Spark 3.5 writes to <checkpoint>/offsets/<batchId>
META = '{"batchWatermarkMs":120000,"batchTimestampMs":1764979200000,"conf":{"spark.sql.shuffle.partitions":"4"}}'
LOG = f'v1\n{META}\n{{"dev.telemetry.events":{{"2":90,"0":1200,"1":1180}}}}'


def test_the_one_sources_end_offsets_as_starting_offsets_json() -> None:
    got = source_end_offsets(LOG)
    assert got == '{"dev.telemetry.events":{"0":1200,"1":1180,"2":90}}'
    assert json.loads(got) == {"dev.telemetry.events": {"0": 1200, "1": 1180, "2": 90}}
    assert source_end_offsets(LOG + "\n") == got  # a trailing newline changes nothing


def test_no_end_offsets_unless_exactly_one_kafka_source_with_offsets() -> None:
    src = '{"t":{"0":1}}'
    assert source_end_offsets(None) is None
    assert source_end_offsets("") is None
    assert source_end_offsets(f"v1\n{META}") is None  # no source line
    assert source_end_offsets(f"v1\n{META}\n{src}\n{src}") is None  # two sources: no one startingOffsets
    assert source_end_offsets(f"v1\n{META}\n-") is None  # a source without an offset yet
    assert source_end_offsets(f"v1\n{META}\n{{}}") is None
    assert source_end_offsets(f'v1\n{META}\n{{"t":{{"0":-1}}}}') is None
    assert source_end_offsets(f'v1\n{META}\n{{"t":{{"x":1}}}}') is None
    assert source_end_offsets(f'v1\n{META}\n{{"t":{{"0":"1"}}}}') is None
    assert source_end_offsets(f'v1\n{META}\n{{"t":[1]}}') is None


def test_snapshot_properties_carry_the_end_offsets_only_when_known() -> None:
    ends = source_end_offsets(LOG)
    assert snapshot_properties("dev-hm", "q", 3, "1.0.0", ends)[END_OFFSETS_KEY] == ends
    assert END_OFFSETS_KEY not in snapshot_properties("dev-hm", "q", 3, "1.0.0", None)
