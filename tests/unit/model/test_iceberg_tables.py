"""``format: iceberg`` in the manifest: partition transforms, the types Iceberg keeps as declared,
and the fields that belong to one format only (controller.model.iceberg, TableSpec)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.model.iceberg import check_iceberg_type, is_promotion, normalize_transform, transform_column
from controller.model.identifiers import IdentifierError
from controller.model.manifest import TableFormat, TableSpec


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("days(window_start)", "days(window_start)"),
        (" hours( window_start ) ", "hours(window_start)"),
        ("bucket(16,host)", "bucket(16, host)"),
        ("truncate( 4 , name)", "truncate(4, name)"),
        ("identity(dt)", "dt"),
        ("dt", "dt"),
    ],
)
def test_transforms_normalize_to_sparks_form(text: str, normalized: str) -> None:
    assert normalize_transform(text) == normalized
    assert transform_column(normalized) == normalized.rsplit("(", 1)[-1].split(", ")[-1].rstrip(")")


@pytest.mark.parametrize(
    "text", ["days(16, ts)", "bucket(host)", "bucket(0, host)", "weeks(ts)", "days(Ts)", ""]
)
def test_bad_transforms_are_refused(text: str) -> None:
    with pytest.raises(IdentifierError):
        normalize_transform(text)


def test_iceberg_types_and_promotions() -> None:
    assert check_iceberg_type("decimal(10,2)") == "decimal(10,2)"
    assert check_iceberg_type("timestamp") == "timestamp"
    for t in ("varchar(10)", "tinyint", "array<int>"):
        with pytest.raises(IdentifierError, match="not supported for format iceberg"):
            check_iceberg_type(t)
    assert is_promotion("int", "bigint") and is_promotion("float", "double")
    assert is_promotion("decimal(10,2)", "decimal(12,2)")
    assert not is_promotion("bigint", "int") and not is_promotion("decimal(10,2)", "decimal(12,3)")
    assert not is_promotion("int", "string")


def _table(**kw: Any) -> TableSpec:
    base: dict[str, Any] = {
        "name": "db.t",
        "columns": [{"name": "ts", "type": "timestamp"}, {"name": "host", "type": "string"}],
    }
    return TableSpec.model_validate({**base, **kw})


def test_iceberg_table_spec() -> None:
    t = _table(format="iceberg", partitioning=["days(ts)", "bucket(8,host)"])
    assert t.format is TableFormat.ICEBERG
    assert t.partitioning == ["days(ts)", "bucket(8, host)"]
    assert _table().format is TableFormat.PARQUET  # Hive parquet stays the default


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"partitioning": ["days(ts)"]}, "partitioning .* needs format: iceberg"),
        ({"format": "iceberg", "partitionedBy": [{"name": "dt", "type": "string"}]}, "use partitioning"),
        ({"format": "iceberg", "partitioning": ["days(other)"]}, "no column 'other'"),
        ({"format": "iceberg", "partitioning": ["weeks(ts)"]}, "partition transform 'weeks\\(ts\\)'"),
        ({"format": "iceberg", "columns": [{"name": "c", "type": "varchar(3)"}]}, r"columns\[0\] \(c\)"),
    ],
)
def test_iceberg_table_spec_errors_say_what_is_wrong(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _table(**kw)
