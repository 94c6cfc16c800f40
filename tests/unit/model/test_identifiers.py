"""Identifier grammars, Hive type normalisation and quoting: names never reach SQL unchecked."""

from __future__ import annotations

import pytest

from controller.model import identifiers as ids


@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("STRING", "string"),
        ("integer", "int"),
        ("decimal", "decimal(10,0)"),
        ("decimal(12, 2)", "decimal(12,2)"),
        ("varchar(20)", "varchar(20)"),
        ("array<struct<a:int, b:map<string,double>>>", "array<struct<a:int,b:map<string,double>>>"),
    ],
)
def test_normalize_hive_type(text: str, norm: str) -> None:
    assert ids.normalize_hive_type(text) == norm


@pytest.mark.parametrize("bad", ["bigint) --", "string; drop table x", "map<string>", "struct<>", "foo", ""])
def test_bad_hive_types(bad: str) -> None:
    with pytest.raises(ids.IdentifierError):
        ids.normalize_hive_type(bad)


def test_quoting_refuses_unchecked_names() -> None:
    assert ids.quote_hive_qualified("dev_telemetry", "host_metrics_1m") == "`dev_telemetry`.`host_metrics_1m`"
    assert ids.quote_presto("host") == '"host"'
    with pytest.raises(ids.IdentifierError):
        ids.quote_hive("x`; DROP TABLE y; --")


def test_string_literals() -> None:
    assert ids.spark_string_literal("it's") == "'it\\'s'"
    assert ids.spark_string_literal("a\\b") == "'a\\\\b'"
    assert ids.presto_string_literal("it's") == "'it''s'"
    with pytest.raises(ids.IdentifierError):
        ids.presto_string_literal("x\n")


def test_semver_ordering() -> None:
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9"]
    assert sorted(versions, key=ids.semver_key) == ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0"]
