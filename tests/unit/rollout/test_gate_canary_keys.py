"""canaryComparison at a key-subset canary's step: both sides read only the keys the canary serves
(bucket < percent, ``controller.plan.keysplit``), so a defect on keys the canary does not serve yet
does not fail the step, and one on keys it serves does. The fake's SQLite gets Presto's ``crc32``
and ``to_utf8`` (as sqlglot writes it: ``encode``) so the same SQL runs."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

from test_gate_canary_generic import BASELINE, CANARY, DECLARED, ctx, gate, rows, world

from controller.model.reasons import Verdict
from controller.plan.keysplit import bucket_of
from controller.rollout.gates import evaluate

KEYS = [(s, e) for s in ("api", "web") for e in ("/a", "/b", "/c")]
PERCENT = 50
SERVED = {k for k in KEYS if bucket_of(list(k)) < PERCENT}


def with_presto_functions(d: Any) -> Any:
    d.db.create_function("crc32", 1, lambda b: zlib.crc32(b), deterministic=True)
    d.db.create_function("encode", 2, lambda s, enc: str(s).encode(enc), deterministic=True)
    return d


def broken_on(keys: set[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """The baseline's rows, with three times the requests on ``keys``."""
    return [(s, e, m, n * 3 if (s, e) in keys else n, v) for s, e, m, n, v in rows()]


def judge(canary_rows: list[tuple[Any, ...]]) -> Any:
    c = dataclasses.replace(ctx(), canary_keys=(("service", "endpoint"), PERCENT))
    return evaluate(gate(**DECLARED), c, with_presto_functions(world(canary_rows)))


def test_the_served_keys_split_the_example_keys() -> None:
    assert SERVED and SERVED != set(KEYS)


def test_a_defect_on_keys_the_canary_does_not_serve_yet_passes_the_step() -> None:
    unserved = broken_on(set(KEYS) - SERVED)
    unfiltered = evaluate(gate(**DECLARED), ctx(), with_presto_functions(world(unserved)))
    assert unfiltered.verdict == Verdict.FAIL  # every key compared: the defect shows
    v = judge(unserved)
    assert v.verdict == Verdict.PASS, v.message
    for side, table in (("canary", CANARY), ("baseline", BASELINE)):
        for q in ("windows", "keys"):
            sql = v.evidence["tables"][0][f"{side}_{q}_sql"]
            assert table.split(".")[1] in sql and "CRC32(TO_UTF8(" in sql and " < 50" in sql, sql


def test_a_defect_on_served_keys_fails_the_step() -> None:
    v = judge(broken_on({sorted(SERVED)[0]}))
    assert v.verdict == Verdict.FAIL, v.message
    assert "requests" in v.message


def test_a_listed_step_compares_exactly_the_listed_keys() -> None:
    listed = dataclasses.replace(ctx(), canary_keys=(("service",), ("api",)))
    web = {k for k in KEYS if k[0] == "web"}
    v = evaluate(gate(**DECLARED), listed, world(broken_on(web)))
    assert v.verdict == Verdict.PASS, v.message  # the defect is on keys the canary does not serve
    sql = v.evidence["tables"][0]["canary_windows_sql"]
    assert "IN ('api')" in sql and "CRC32" not in sql, sql
    v = evaluate(gate(**DECLARED), listed, world(broken_on(set(KEYS) - web)))
    assert v.verdict == Verdict.FAIL, v.message
