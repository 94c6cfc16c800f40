"""``tables[].maintenance`` in a manifest (``controller.model.maintenance``): what it accepts, and
what it refuses with the reason (a table that is not Iceberg, a retention column without a time
partition transform, orphan removal under Iceberg's 24 hours, a bad schedule or age)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.model.maintenance import parse_age
from controller.model.manifest import TableSpec


def spec(maintenance: dict[str, Any], **kw: Any) -> TableSpec:
    doc: dict[str, Any] = {
        "name": "telemetry.events_1m", "format": "iceberg",
        "columns": [{"name": "window_start", "type": "timestamp"}, {"name": "host", "type": "string"},
                    {"name": "day", "type": "date"}],
        "partitioning": ["days(window_start)", "bucket(8, host)", "day"], "maintenance": maintenance,
    }
    doc.update(kw)
    return TableSpec.model_validate(doc)


def test_the_documented_shape_is_accepted_with_defaults() -> None:
    t = spec({"schedule": "0 3 * * *", "retention": {"column": "window_start", "keep": "180d"},
              "expireSnapshots": {}, "removeOrphanFiles": {}, "compact": {}})
    m = t.maintenance
    assert m is not None and m.schedule == "0 3 * * *"
    assert m.expire_snapshots is not None and (m.expire_snapshots.older_than, m.expire_snapshots.retain_last,
                                                m.expire_snapshots.keep_audited) == ("7d", 1, "30d")
    assert m.remove_orphan_files is not None and m.remove_orphan_files.older_than == "3d"
    assert m.compact is not None and m.compact.min_input_files == 5


@pytest.mark.parametrize(
    ("maintenance", "extra", "message"),
    [
        ({"schedule": "@daily"}, {"format": "parquet", "partitioning": []}, "maintenance needs format: iceberg"),
        ({"schedule": "@daily", "retention": {"column": "host", "keep": "30d"}}, {},
         "partitioned by years|months|days|hours of it"),
        ({"schedule": "@daily", "retention": {"column": "day", "keep": "30d"}}, {},
         "partitioned by years|months|days|hours of it"),  # identity: not a time transform
        ({"schedule": "@daily", "removeOrphanFiles": {"olderThan": "12h"}}, {}, "under 1d"),
        ({"schedule": "@once"}, {}, "maintenance schedule"),
        ({"schedule": "every day"}, {}, "invalid schedule"),
        ({"schedule": "@daily", "retention": {"column": "window_start", "keep": "6 months"}}, {}, "invalid age"),
        ({"schedule": "@daily", "expireSnapshots": {"retainLast": 0}}, {}, "greater than or equal to 1"),
        ({"schedule": "@daily", "vacuum": True}, {}, "Extra inputs are not permitted"),
    ],
)
def test_refused_with_the_reason(maintenance: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(maintenance, **extra)


def test_ages_are_whole_minutes_hours_or_days() -> None:
    assert parse_age("180d") == 180 * 86400 and parse_age("12h") == 43200 and parse_age("5m") == 300
    for bad in ("0d", "1.5d", "10s", ""):
        with pytest.raises(ValueError, match="invalid age"):
            parse_age(bad)
