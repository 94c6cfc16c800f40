"""Kafka config normalisation: what counts as the same value, and what is sent to the broker.

The diff behaviour itself is covered by the golden cases tests/golden/plan/topic-*/.
"""

from __future__ import annotations

import pytest

from controller.plan.actions import DiffContext
from controller.plan.rules.kafka import (
    config_equal,
    diff_topic,
    normalize_config_value,
    wire_config_value,
)


@pytest.mark.parametrize(
    ("key", "a", "b"),
    [
        ("retention.ms", "604800000", "604800000.0"),
        ("retention.ms", "604800000", " 6.048E+8 "),
        ("retention.bytes", "-1", "-1.0"),
        ("min.cleanable.dirty.ratio", "0.5", "0.50"),
        ("cleanup.policy", "compact,delete", "delete, compact"),
        ("cleanup.policy", "delete", "DELETE"),
        ("compression.type", "lz4", "LZ4"),
        ("message.timestamp.type", "CreateTime", "createtime"),
        ("unclean.leader.election.enable", "false", "False"),
        ("some.plugin.number", "10", "10.00"),
        ("some.plugin.flag", "true", "TRUE"),
    ],
)
def test_equal_after_normalisation(key: str, a: str, b: str) -> None:
    assert config_equal(key, a, b)


@pytest.mark.parametrize(
    ("key", "a", "b"),
    [
        ("retention.ms", "604800000", "604800001"),
        ("retention.ms", "604800000", "7d"),
        ("cleanup.policy", "compact", "compact,delete"),
        ("min.cleanable.dirty.ratio", "0.5", "0.55"),
        ("message.format.version", "3.0-IV1", "3.0-iv1"),  # free text: exact
        ("some.plugin.text", "Abc", "abc"),
        ("retention.ms", "1", None),
    ],
)
def test_different(key: str, a: str, b: str | None) -> None:
    assert not config_equal(key, a, b)


def test_normal_forms() -> None:
    assert normalize_config_value("retention.ms", "1e30") == "1" + "0" * 30
    assert normalize_config_value("cleanup.policy", "delete,compact,delete") == "compact,delete"


@pytest.mark.parametrize(
    ("key", "value", "wire"),
    [
        ("retention.ms", "604800000.0", "604800000"),
        ("retention.ms", "6.048E+8", "604800000"),
        ("min.cleanable.dirty.ratio", "0.50", "0.50"),
        ("cleanup.policy", " compact , delete ", "compact,delete"),
        ("compression.type", " zstd ", "zstd"),
        ("retention.ms", "7d", "7d"),
    ],
)
def test_wire_value(key: str, value: str, wire: str) -> None:
    assert wire_config_value(key, value) == wire


def test_nothing_desired_nothing_live() -> None:
    assert diff_topic(None, None, DiffContext()) == []
