"""Second-order SQL: a scheduled transform run executes the SQL recorded in the live serving view,
so it must hash that very text and refuse unless it is git's digest. A fake catalog stands in for
Presto; the view's SQL is replaced out of band, keeping (or forging) the recorded digest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from controller.adapters.presto import PrestoClient
from controller.adapters.transforms import TransformAdapter
from controller.adapters.transforms_record import view_meta
from controller.model.errors import PermanentBackendError
from controller.plan.resources import Column, Owner, TransformResource
from controller.plan.transforms_model import sha

NAME = "dev_telemetry.daily"
GIT_SQL = 'SELECT "host", "dt" FROM "hive"."dev_telemetry"."events"'
EVIL_SQL = 'SELECT "host", "dt" FROM "hive"."prod_secrets"."credentials"'


class FakeCatalog(TransformAdapter):
    """The catalog as a dict: one served view (``meta``) and its table; statements are recorded."""

    def __init__(self, meta: dict[str, Any], live: TransformResource) -> None:
        super().__init__(PrestoClient("127.0.0.1"), sleep=lambda _s: None)
        self.meta, self.live = meta, live
        self.statements: list[str] = []

    def _observe(self, names: Sequence[str]) -> dict[str, tuple[TransformResource, dict[str, Any]]]:
        return {NAME: (self.live, self.meta)} if NAME in names else {}

    def _columns(self, relation: str) -> list[tuple[str, str, bool]]:
        return [("host", "varchar", False), ("dt", "varchar", True)]

    def _tables(self, db: str) -> dict[str, str]:
        return {}

    def _exec(self, sql: str, op: str) -> None:
        self.statements.append(sql)

    def _query(self, sql: str, op: str) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return [(3,)]


def _catalog(materialized: str, view_sql: str, recorded_digest: str | None = None) -> FakeCatalog:
    desired = TransformResource(
        name=NAME,
        owner=Owner(release="r", version="1.0.0"),
        materialized=materialized,
        compiled_sql=GIT_SQL,
        compiled_sql_digest=sha(GIT_SQL),
        digest="sha256:" + "ab" * 32,
        columns=[Column(name="host", type="string"), Column(name="dt", type="string")],
        partition_by=["dt"] if materialized == "incremental" else [],
    )
    relation = f"{NAME}__abababab"
    meta = view_meta(desired, relation=relation)
    meta["sql"] = view_sql  # replaced out of band (or not)
    if recorded_digest is not None:
        meta["sql_digest"] = recorded_digest
    live = desired.model_copy(
        update={"compiled_sql": None, "relation": relation, "compiled_sql_digest": meta["sql_digest"]}
    )
    return FakeCatalog(meta, live)


def test_untouched_view_runs_gits_sql() -> None:
    cat = _catalog("incremental", GIT_SQL)
    result = cat.run(NAME, "2026-01-01", expect_sql_digest=sha(GIT_SQL))
    assert result.rows == 3
    assert any(GIT_SQL in s for s in cat.statements)


@pytest.mark.parametrize("materialized", ["incremental", "table"])
def test_replaced_view_sql_is_refused(materialized: str) -> None:
    # the attacker keeps the recorded digest (git's), so the recorded record alone looks right
    cat = _catalog(materialized, EVIL_SQL)
    with pytest.raises(PermanentBackendError) as e:
        cat.run(NAME, "2026-01-01", expect_sql_digest=sha(GIT_SQL))
    msg = str(e.value)
    assert f"transform {NAME}: the SQL recorded in its live view hashes to {sha(EVIL_SQL)[:19]}" in msg
    assert f"not {sha(GIT_SQL)[:19]}" in msg and "changed outside pipectl" in msg
    assert not any("INSERT" in s or "CREATE" in s or "DELETE" in s for s in cat.statements), cat.statements
    assert not any(EVIL_SQL in s for s in cat.statements)


def test_forged_recorded_digest_is_refused() -> None:
    # the recorded digest rewritten to match the new SQL: git's digest still differs
    cat = _catalog("incremental", EVIL_SQL, recorded_digest=sha(EVIL_SQL))
    with pytest.raises(PermanentBackendError):
        cat.run_incremental(NAME, "2026-01-01", expect_sql_digest=sha(GIT_SQL))
    assert not any(EVIL_SQL in s for s in cat.statements)


def test_without_gits_digest_the_recorded_one_must_still_match_the_text() -> None:
    cat = _catalog("incremental", EVIL_SQL)
    with pytest.raises(PermanentBackendError, match="changed outside pipectl"):
        cat.run_incremental(NAME, "2026-01-01")
