"""Rendering for the CLI: kubectl-style tables, YAML and JSON, ages like ``5m`` and ``2d``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console

from controller.plan.actions import Approval, Op, Plan


def age(ts: Any, now: datetime | None = None) -> str:
    if not ts:
        return "<unknown>"
    t = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    secs = int(((now or datetime.now(UTC)) - t).total_seconds())
    if secs < 120:
        return f"{max(secs, 0)}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2, default=str, sort_keys=False)
    return yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False, width=120)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A kubectl-like table: upper-case headers, columns padded with three spaces."""
    cells = [list(headers)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def gates_summary(stage: dict[str, Any]) -> str:
    gates = stage.get("gates") or []
    if not gates:
        return "-"
    passed = sum(1 for g in gates if g.get("verdict") == "pass")
    failed = [g["name"] for g in gates if g.get("verdict") == "fail"]
    s = f"{passed}/{len(gates)}"
    return s + (f" ({','.join(failed)} failed)" if failed else "")


_SYMBOL = {Op.CREATE: "+", Op.UPDATE: "~", Op.REPLACE: "-/+", Op.DELETE: "-", Op.REFUSE: "!"}


def render_plan(plan: Plan, console: Console) -> None:
    """Terraform-like: the plan's notes (a schema change's producer/consumer order), one line per
    action with its reason, then the field changes, then the destructive actions awaiting approval
    with the command that approves each (bound to its digest)."""
    for n in plan.notes:
        console.print(f"Note: {n}", markup=False)
    if not plan.actions:
        console.print(f"No changes. {plan.release} {plan.version} at {plan.stage} matches live state.")
        return
    console.print(f"Plan: {plan.release} {plan.version} → {plan.stage}" + (f" (commit {plan.commit[:12]})"
                                                                          if plan.commit else ""))
    rows = []
    for a in plan.actions:
        reason = a.reason + (f" [{a.reason_code}]" if a.reason_code else "")
        rows.append([_SYMBOL.get(a.op, "?"), str(a.op), str(a.kind), a.name, str(a.reversibility), reason])
    console.print(plain_table(["", "ACTION", "KIND", "NAME", "REVERSIBILITY", "REASON"], rows), markup=False)
    for a in plan.actions:
        for c in a.changes:
            console.print(f"  {a.kind.lower()} {a.name} {c}", markup=False)
    for a in plan.actions:
        if a.approval is Approval.APPROVED:
            console.print(f"  {a.id}: approved by {a.approved_by} ({a.approval_digest})", markup=False)
    for a in plan.pending:
        console.print(
            f"  {a.id} needs approval: pipectl approve {plan.release} --stage {plan.stage} "
            f"--destructive {a.id} --digest {a.approval_digest}",
            markup=False,
        )
    counts: dict[str, int] = {}
    for a in plan.actions:
        counts[str(a.op)] = counts.get(str(a.op), 0) + 1
    waiting = f" ({len(plan.pending)} awaiting approval, not applied)" if plan.pending else ""
    console.print("Plan: " + ", ".join(f"{n} to {op}" for op, n in counts.items()) + waiting)
