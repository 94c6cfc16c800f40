"""Rolling an Iceberg table back to an older snapshot through Presto
(``rollback_sql``, ``rollback_to_snapshot`` in controller.adapters.hive_iceberg), offline: the CALL
it sends, the ids and names it refuses, and that a table already at the snapshot gets no CALL."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters import hive_iceberg as ice


class FakePresto:
    """Answers the current-snapshot read with ``current`` and records every statement."""

    def __init__(self, current: str | None) -> None:
        self.current = current
        self.sent: list[tuple[str, str]] = []

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        self.sent.append((op, sql))
        if op == "iceberg_snapshots" and self.current is not None:
            return [("db.events", self.current, "2026-12-05 17:12:07.715 UTC")]
        return [(True,)] if op == "iceberg_rollback" else []


def test_rollback_sql_is_presto_call_with_quoted_names_and_the_id_as_a_number() -> None:
    assert ice.rollback_sql("db.events", "3355003266252471616") == (
        "CALL \"iceberg\".system.rollback_to_snapshot('db', 'events', 3355003266252471616)"
    )
    assert ice.rollback_sql("db.events", "-42", catalog="ice2").startswith('CALL "ice2".system.')
    assert ice.rollback_sql("db.events", "-42").endswith("'events', -42)")


@pytest.mark.parametrize("snapshot_id", ["", "12a", "1; DROP TABLE x", "9223372036854775808", "1.5"])
def test_rollback_sql_refuses_what_is_not_a_64_bit_snapshot_id(snapshot_id: str) -> None:
    with pytest.raises(ValueError, match="not an Iceberg snapshot id"):
        ice.rollback_sql("db.events", snapshot_id)


def test_rollback_sql_refuses_a_bad_table_name() -> None:
    with pytest.raises(ValueError):
        ice.rollback_sql("db.ev'ents", "1")


def test_rollback_reads_the_current_snapshot_then_calls_rollback() -> None:
    presto = FakePresto(current="222")
    assert ice.rollback_to_snapshot(presto, "db.events", "111") is True
    (op1, read), (op2, call) = presto.sent
    assert (op1, op2) == ("iceberg_snapshots", "iceberg_rollback")
    assert read == ice.snapshots_sql(["db.events"])
    assert call == "CALL \"iceberg\".system.rollback_to_snapshot('db', 'events', 111)"


def test_rollback_of_a_table_already_at_the_snapshot_sends_no_call() -> None:
    presto = FakePresto(current="111")
    assert ice.rollback_to_snapshot(presto, "db.events", "111") is False
    assert [op for op, _ in presto.sent] == ["iceberg_snapshots"]


def test_rollback_of_a_table_without_a_current_snapshot_still_calls() -> None:
    presto = FakePresto(current=None)
    assert ice.rollback_to_snapshot(presto, "db.events", "111") is True
    assert [op for op, _ in presto.sent] == ["iceberg_snapshots", "iceberg_rollback"]


def test_a_bad_id_is_refused_before_any_statement_is_sent() -> None:
    presto = FakePresto(current="222")
    with pytest.raises(ValueError):
        ice.rollback_to_snapshot(presto, "db.events", "abc")
    assert presto.sent == []
