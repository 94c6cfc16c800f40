"""canaryComparison: canary vs baseline outputs over the same closed event-time windows.

The settings come from the gate (inline, or its ``template`` from the stage Environment's
``analysisTemplates``; an unknown template fails) and the columns from ``canary_query``
(declared, the default profile, or inferred from both tables' live columns).

For every table mapped in both ``ctx.canary_tables`` and ``ctx.baseline_tables`` (no baseline
mapped — no known-good version yet, e.g. a release's first rollout — passes: nothing to compare):

1. **Watermarks.** When a streaming job of the release writes the table and is mapped (canary:
   ``ctx.jobs``, baseline: ``ctx.baseline_jobs``), its progress watermark is used; without one yet
   the verdict is inconclusive. A table no mapped job writes (a batch output) uses its own data:
   the end of its newest window, so only that newest window counts as open.
2. **Windows.** Per-window row counts and sums of both tables are read (bounded by
   ``canary_query.LOOKBACK``). A window is compared when it is closed on both sides
   (``window_start < min(watermarks) - window``) and not before either side's first *complete*
   window (a side's first window may have started mid-way, so it is skipped; a canary that
   replays from before a young baseline started is compared only where both are whole). A window
   present on one side only counts as zero on the other: a canary that loses whole windows is
   caught.
3. **Soak in data.** Fewer than ``minClosedWindows`` such windows → inconclusive.
4. **Metrics.** Per metric, its statistic (``statistics``): ``relativeTotal`` over the per-window
   sums, the distribution statistics over the per-(keys, window) means. The table's verdict is the
   worst metric's; each metric's statistic, value, threshold and sample sizes are in the evidence.

Window starts are read as UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.model.analysis import CanaryAnalysis, Statistic, TemplateError
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.manifest import CanaryComparisonGate
from controller.model.reasons import Verdict
from controller.rollout.canary_providers import evaluate_providers
from controller.rollout.canary_query import (
    LOOKBACK,
    CanaryColumns,
    ColumnsError,
    live_columns_sql,
    needs_live_columns,
    parse_live_columns,
    per_key_sql,
    per_window_sql,
    resolve_columns,
)
from controller.rollout.context import GateContext, GateData, GateVerdict, JobNotFound, as_utc, worst
from controller.rollout.sqlrewrite import SqlRefused
from controller.rollout.statistics import MetricOutcome, judge, threshold_of

__all__ = ["evaluate_canary", "parse_timestamp"]

MAX_WINDOWS_IN_EVIDENCE = 120


class _Stop(Exception):
    """Ends one table's comparison early with a verdict."""

    def __init__(self, verdict: Verdict, message: str):
        super().__init__(message)
        self.verdict = verdict
        self.message = message


@dataclass
class _Side:
    label: str
    table: str
    relation: str
    """``table`` as the stage's Presto addresses it (``GateContext.relation``)."""
    watermark: datetime | None = None
    watermark_source: str = ""
    windows: dict[datetime, tuple[float, ...]] | None = None
    """window start → (rows, sum of each total column)."""


def evaluate_canary(gate: CanaryComparisonGate, ctx: GateContext, data: GateData) -> GateVerdict:
    """The canaryComparison verdict over every table the canary and the baseline both map, and
    over the gate's ``providers`` (``canary_providers``); the worst of the two."""
    tables = _evaluate_tables(gate, ctx, data)
    try:
        analysis = gate.analysis(ctx.stage_ctx.spec.analysis_templates)
    except TemplateError:
        return tables  # reported by the tables' comparison (or nothing to compare yet)
    if not analysis.providers:
        return tables
    verdict, message, evidence = evaluate_providers(analysis.providers, analysis.tolerance, ctx, data)
    if not ctx.baseline_tables:  # no table to compare: the providers alone decide
        return _verdict(gate, verdict, message, {"providers": evidence})
    both = worst([tables.verdict, verdict])
    messages = [m for v, m in ((tables.verdict, tables.message), (verdict, message)) if v is both]
    return _verdict(gate, both, "; ".join(messages), {**tables.evidence, "providers": evidence})


def _evaluate_tables(gate: CanaryComparisonGate, ctx: GateContext, data: GateData) -> GateVerdict:
    if not ctx.baseline_tables:
        # like a schema's first version: with no known-good version at the stage (or at the
        # stage a canary shadows) there is nothing to compare against
        return _verdict(
            gate, Verdict.PASS, f"no baseline version at stage {ctx.stage} to compare against", {}
        )
    if not ctx.canary_tables:
        return _verdict(gate, Verdict.INCONCLUSIVE, "the canary's outputs are not mapped yet", {})
    logical = sorted(set(ctx.canary_tables) & set(ctx.baseline_tables))
    if not logical:
        return _verdict(
            gate,
            Verdict.FAIL,
            "no table is mapped for both the canary and the baseline",
            {"canary_tables": dict(ctx.canary_tables), "baseline_tables": dict(ctx.baseline_tables)},
        )
    try:
        analysis = gate.analysis(ctx.stage_ctx.spec.analysis_templates)
    except TemplateError as e:
        return _verdict(gate, Verdict.FAIL, f"template: {e}", {})
    results = [_compare_table(gate, analysis, ctx, data, name) for name in logical]
    verdict = worst([r[0] for r in results])
    messages = [r[1] for r in results if r[0] is verdict]
    evidence: dict[str, Any] = {"tables": [r[2] for r in results]}
    if gate.template is not None:
        evidence["template"] = gate.template.model_dump(mode="json")
    return _verdict(gate, verdict, "; ".join(messages), evidence)


def _verdict(
    gate: CanaryComparisonGate, verdict: Verdict, message: str, evidence: dict[str, Any]
) -> GateVerdict:
    return GateVerdict(name=gate.name, type=gate.type, verdict=verdict, message=message, evidence=evidence)


# --- one table ------------------------------------------------------------------------------


def _compare_table(
    gate: CanaryComparisonGate, analysis: CanaryAnalysis, ctx: GateContext, data: GateData, logical: str
) -> tuple[Verdict, str, dict[str, Any]]:
    canary = _Side("canary", ctx.canary_tables[logical], ctx.relation(ctx.canary_tables[logical]))
    baseline = _Side("baseline", ctx.baseline_tables[logical], ctx.relation(ctx.baseline_tables[logical]))
    ev: dict[str, Any] = {"table": logical, "canary_table": canary.table, "baseline_table": baseline.table}
    try:
        cols = _columns(analysis, data, canary, baseline, ev)
        _read_windows(ctx, cols, data, logical, canary, baseline, ev)
        windows = _closed_windows(analysis, cols, logical, canary, baseline, ev)
        _per_window_evidence(cols, canary, baseline, windows, ev)
        values: dict[str, list[tuple[float | None, ...]]] = {}
        for side in (canary, baseline):
            sql = per_key_sql(side.relation, cols, windows[0], windows[-1], ctx.canary_keys)
            ev[f"{side.label}_keys_sql"] = sql
            values[side.label] = _key_values(data.query(sql), len(cols.keys), set(windows))
        outcomes = _judge_metrics(analysis, cols, canary, baseline, windows, values)
        ev["metrics"] = [o.evidence() for o in outcomes]
        verdict = worst([o.verdict for o in outcomes])
        shown = [o for o in outcomes if o.verdict is verdict]
        if verdict is Verdict.PASS:
            summary = ", ".join(_describe(o) for o in shown)
            return (
                verdict,
                f"{logical}: canary matches the baseline over {len(windows)} closed windows ({summary})",
                ev,
            )
        return verdict, f"{logical}: " + "; ".join(_describe(o) for o in shown), ev
    except _Stop as stop:
        return stop.verdict, stop.message, ev
    except (SqlRefused, ColumnsError) as e:
        return Verdict.FAIL, f"{logical}: {e}", ev
    except TransientBackendError as e:
        return Verdict.INCONCLUSIVE, f"{logical}: {e}", ev
    except PermanentBackendError as e:
        return Verdict.FAIL, f"{logical}: {e}", ev


def _columns(
    analysis: CanaryAnalysis, data: GateData, canary: _Side, baseline: _Side, ev: dict[str, Any]
) -> CanaryColumns:
    """The compared columns: declared ones as they are; otherwise read both tables' live columns."""
    live = {}
    if needs_live_columns(analysis):
        for side in (canary, baseline):
            live[side.label] = parse_live_columns(data.query(live_columns_sql(side.relation)))
            if not live[side.label]:
                raise _Stop(Verdict.INCONCLUSIVE, f"the {side.label}'s table {side.table} has no columns yet")
    cols = resolve_columns(analysis, live.get("canary"), live.get("baseline"))
    ev["columns"] = {
        "keys": list(cols.keys),
        "window": {"column": cols.window_column, "seconds": cols.window.total_seconds()},
        "metrics": [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in cols.metrics],
        "origin": dict(cols.origin),
    }
    return cols


def _describe(o: MetricOutcome) -> str:
    name = f"{o.column} {o.statistic}"
    if o.value is None:
        return f"{name}: {o.note} ({o.n_canary} canary, {o.n_baseline} baseline)"
    if o.statistic == Statistic.RELATIVE_TOTAL.value:
        shown = f"{o.value:+.2%} (tolerance {o.threshold:.2%})"
        if o.detail:
            shown = (
                f"{o.value:+.2%}, {_num(o.detail['canary_total'])} vs {_num(o.detail['baseline_total'])} "
                f"(tolerance {o.threshold:.2%})"
            )
    elif o.statistic == Statistic.QUANTILE_SHIFT.value:
        shown = f"p{o.detail['quantile'] * 100:g} shift {o.value:+.2%} (threshold {o.threshold:.2%})"
    elif o.detail.get("criterion") == "d":
        shown = f"D={o.value:.3g} (threshold {o.threshold:g}, p={o.detail['p_value']:.3g})"
    else:
        shown = f"p={o.value:.3g} (alpha {o.threshold:g})"
    return f"{name} {shown}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


def _judge_metrics(
    analysis: CanaryAnalysis,
    cols: CanaryColumns,
    canary: _Side,
    baseline: _Side,
    windows: list[datetime],
    values: dict[str, list[tuple[float | None, ...]]],
) -> list[MetricOutcome]:
    assert canary.windows is not None and baseline.windows is not None
    out = []
    pairs = list(cols.value_columns)
    totals = list(cols.total_columns)
    for m in cols.metrics:
        i = pairs.index((m.column, m.weight))
        c_vals = [x for v in values["canary"] if (x := v[i]) is not None]
        b_vals = [x for v in values["baseline"] if (x := v[i]) is not None]
        sums = None
        if m.statistic is Statistic.RELATIVE_TOTAL:
            j = 1 + totals.index(m.column)
            zero = (0.0,) * (1 + len(totals))
            sums = (
                math.fsum(canary.windows.get(w, zero)[j] for w in windows),
                math.fsum(baseline.windows.get(w, zero)[j] for w in windows),
            )
        out.append(judge(m, threshold_of(m, analysis.tolerance, analysis.alpha), c_vals, b_vals, sums))
    return out


def _read_windows(
    ctx: GateContext,
    cols: CanaryColumns,
    data: GateData,
    logical: str,
    canary: _Side,
    baseline: _Side,
    ev: dict[str, Any],
) -> None:
    """Steps 1 and 2: each side's watermark (its writer job's, else the end of its newest window)
    and its per-window row counts and sums."""
    writer = _writer_job(ctx, logical)
    for side, jobs in ((canary, ctx.jobs), (baseline, ctx.baseline_jobs)):
        if writer is not None and writer in jobs:
            _job_watermark(side, jobs[writer], data)
    since = ctx.now_utc - LOOKBACK
    for side in (canary, baseline):
        sql = per_window_sql(side.relation, cols, since, ctx.canary_keys)
        ev[f"{side.label}_windows_sql"] = sql
        side.windows = _window_totals(data.query(sql))
        if not side.windows:
            raise _Stop(Verdict.INCONCLUSIVE, f"{logical}: the {side.label} has written no windows yet")
        if side.watermark is None:
            side.watermark = max(side.windows) + cols.window
            side.watermark_source = "data: end of the newest window"


def _closed_windows(
    analysis: CanaryAnalysis,
    cols: CanaryColumns,
    logical: str,
    canary: _Side,
    baseline: _Side,
    ev: dict[str, Any],
) -> list[datetime]:
    """Steps 2 and 3: the windows closed on both sides from the canary's first complete one; too
    few of them → inconclusive (soaking)."""
    assert canary.windows is not None and baseline.windows is not None
    assert canary.watermark is not None and baseline.watermark is not None
    ev["watermarks"] = {
        "canary": {"value": canary.watermark.isoformat(), "source": canary.watermark_source},
        "baseline": {"value": baseline.watermark.isoformat(), "source": baseline.watermark_source},
    }
    closed_before = min(canary.watermark, baseline.watermark) - cols.window
    # Each side's first window may have started mid-way (its job started then): compare from the
    # later of the two first complete windows. A canary replaying from before the baseline started
    # (a young baseline) would otherwise be judged against windows the baseline never saw whole.
    first_complete = min(canary.windows) + cols.window
    baseline_first = min(baseline.windows) + cols.window
    windows = sorted(
        w
        for w in set(canary.windows) | set(baseline.windows)
        if max(first_complete, baseline_first) <= w < closed_before
    )
    ev["windows"] = {
        "count": len(windows),
        "required": analysis.min_closed_windows,
        "first": windows[0].isoformat() if windows else None,
        "last": windows[-1].isoformat() if windows else None,
        "closed_before": closed_before.isoformat(),
        "canary_first_complete": first_complete.isoformat(),
        "baseline_first_complete": baseline_first.isoformat(),
    }
    if len(windows) < analysis.min_closed_windows:
        raise _Stop(
            Verdict.INCONCLUSIVE,
            f"{logical}: soaking, {len(windows)} of {analysis.min_closed_windows} closed windows compared",
        )
    return windows


def _per_window_evidence(
    cols: CanaryColumns, canary: _Side, baseline: _Side, windows: list[datetime], ev: dict[str, Any]
) -> None:
    """The newest compared windows: [start, canary rows, baseline rows, then per total column the
    canary's and the baseline's sums]."""
    assert canary.windows is not None and baseline.windows is not None
    zero = (0.0,) * (1 + len(cols.total_columns))
    ev["per_window_columns"] = ["window", "canary_rows", "baseline_rows"] + [
        f"{side}_{c}" for c in cols.total_columns for side in ("canary", "baseline")
    ]
    rows = []
    for w in windows[-MAX_WINDOWS_IN_EVIDENCE:]:
        c, b = canary.windows.get(w, zero), baseline.windows.get(w, zero)
        row: list[Any] = [w.isoformat(), int(c[0]), int(b[0])]
        for j in range(1, len(zero)):
            row += [c[j], b[j]]
        rows.append(row)
    ev["per_window"] = rows


def _writer_job(ctx: GateContext, logical: str) -> str | None:
    for job in ctx.release.spec.streaming_jobs:
        if any(s.table == logical for s in job.sinks):
            return job.name
    return None


def _job_watermark(side: _Side, job: str, data: GateData) -> None:
    try:
        progress = data.job_progress(job)
    except JobNotFound:
        raise _Stop(Verdict.FAIL, f"the {side.label} job {job} is not deployed") from None
    if progress is None or progress.watermark is None:
        raise _Stop(Verdict.INCONCLUSIVE, f"waiting for the first watermark of the {side.label} job {job}")
    side.watermark = as_utc(progress.watermark)
    side.watermark_source = f"job {job}"


# --- results --------------------------------------------------------------------------------


def parse_timestamp(v: object) -> datetime:
    """A result cell as a UTC datetime (Presto's client returns timestamps as text)."""
    if isinstance(v, datetime):
        return as_utc(v)
    if isinstance(v, str):
        try:
            return as_utc(datetime.fromisoformat(v.strip().replace("Z", "+00:00")))
        except ValueError:
            pass
    raise _Stop(Verdict.FAIL, f"unexpected window start value {v!r} (expected a timestamp)")


def _number(v: object) -> float | None:
    if v is None:
        return None
    f = float(v)  # type: ignore[arg-type]  # Presto gives int, float, Decimal or numeric text
    return None if math.isnan(f) else f


def _window_totals(rows: list[tuple[Any, ...]]) -> dict[datetime, tuple[float, ...]]:
    out: dict[datetime, tuple[float, ...]] = {}
    for row in rows:
        if row[0] is None:
            continue
        w = parse_timestamp(row[0])
        figures = tuple(_number(x) or 0.0 for x in row[1:])
        prev = out.get(w)
        out[w] = figures if prev is None else tuple(a + b for a, b in zip(prev, figures, strict=True))
    return out


def _key_values(
    rows: list[tuple[Any, ...]], n_keys: int, windows: set[datetime]
) -> list[tuple[float | None, ...]]:
    """Per (keys, window) row of a closed window: the value columns' means (None where NULL/NaN)."""
    out = []
    for row in rows:
        w = row[n_keys]
        if w is None or parse_timestamp(w) not in windows:
            continue
        out.append(tuple(_number(v) for v in row[n_keys + 1 :]))
    return out
