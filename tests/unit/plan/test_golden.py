"""Golden plan cases: tests/golden/plan/<case>/{desired,live,expected}.yaml (+ optional context.yaml).

desired.yaml and live.yaml are lists of resources (the ``controller.plan.resources`` models);
expected.yaml is the ordered list of actions, each ``{op, kind, name}`` plus optionally
``reason_code``, ``reversibility``, ``changes`` (the rendered ``field: old → new`` strings),
``approval`` (required | approved) and ``approved_by``. context.yaml may hold ``prune``,
``allow_delete`` and ``grants`` (``{action_id, digest, approver}``: destructive approvals).
An empty list means a no-op; such a case should say why in a ``# comment`` at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from controller.plan.actions import Action, DiffContext, Grant
from controller.plan.planner import diff_resources
from controller.plan.resources import Resource

CASES = Path(__file__).resolve().parents[2] / "golden" / "plan"
_resources: TypeAdapter[list[Any]] = TypeAdapter(list[Resource])


def _load(path: Path) -> Any:
    if not path.exists():
        return None
    return yaml.safe_load(path.read_text())


def _render(a: Action, expected: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"op": str(a.op), "kind": str(a.kind), "name": a.name}
    if "reason_code" in expected:
        out["reason_code"] = a.reason_code
    if "reversibility" in expected:
        out["reversibility"] = str(a.reversibility)
    if "changes" in expected:
        out["changes"] = [str(c) for c in a.changes]
    for key in ("approval", "approved_by"):
        if key in expected:
            value = getattr(a, key)
            out[key] = str(value) if value is not None else None
    return out


def _cases() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if p.is_dir()) if CASES.exists() else []


@pytest.mark.parametrize("case", _cases())
def test_golden_plan(case: str) -> None:
    d = CASES / case
    desired = _resources.validate_python(_load(d / "desired.yaml") or [])
    live_list = _resources.validate_python(_load(d / "live.yaml") or [])
    ctx_raw = _load(d / "context.yaml") or {}
    ctx = DiffContext(
        allow_delete=frozenset(ctx_raw.get("allow_delete", [])),
        prune=bool(ctx_raw.get("prune", False)),
        grants=tuple(Grant.model_validate(g) for g in ctx_raw.get("grants", [])),
    )
    live = {r.key: r for r in live_list}
    prune = live_list if ctx.prune else []
    expected = _load(d / "expected.yaml") or []
    actions = diff_resources(desired, live, ctx, prune_candidates=prune)
    got = [_render(a, e) for a, e in zip(actions, expected, strict=False)]
    got += [_render(a, {}) for a in actions[len(expected) :]]
    assert got == expected, f"golden case {case}"


def test_every_case_has_expected() -> None:
    for case in _cases():
        assert (CASES / case / "expected.yaml").exists(), case
