"""canaryComparison: canary vs baseline outputs over the same closed event-time windows.

For every table mapped in both ``ctx.canary_tables`` and ``ctx.baseline_tables`` (no baseline
mapped — no known-good version yet, e.g. a release's first rollout — passes: nothing to compare):

1. **Watermarks.** When a streaming job of the release writes the table and is mapped (canary:
   ``ctx.jobs``, baseline: ``ctx.baseline_jobs``), its progress watermark is used; without one yet
   the verdict is inconclusive. A table no mapped job writes (a batch output) uses its own data:
   the end of its newest window, so only that newest window counts as open.
2. **Windows.** Per-window sample totals of both tables are read (bounded by
   ``CanaryColumns.lookback``). A window is compared when it is closed on both sides
   (``window_start < min(watermarks) - window``) and not before the canary's first *complete*
   window (its first window may have started mid-way, so it is skipped). A window present on one
   side only counts as zero on the other: a canary that loses whole windows is caught.
3. **Soak in data.** Fewer than ``min_closed_windows`` such windows → inconclusive.
4. **Counts.** ``|canary - baseline| / baseline`` of the total samples above ``tolerance`` → fail.
5. **Distributions.** Per (key, window) the sample-weighted value mean is read from both tables
   and a two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``) compares the two sets;
   ``p < alpha`` → fail. Fewer than 3 values on a side skip the test (noted in the evidence).

SQL is built here, with checked and quoted physical names and column names only; timestamps in
it are formatted from parsed datetimes. ``window_start`` values are read as UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy.stats import mannwhitneyu

from controller.model import identifiers as ids
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.manifest import CanaryComparisonGate
from controller.model.reasons import Verdict
from controller.rollout.context import (
    CanaryColumns,
    GateContext,
    GateData,
    GateVerdict,
    JobNotFound,
    as_utc,
    worst,
)
from controller.rollout.sqlrewrite import SqlRefused, quoted_table

__all__ = ["CanaryColumns", "evaluate_canary", "per_key_sql", "per_window_sql"]

MIN_TEST_VALUES = 3
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
    watermark: datetime | None = None
    watermark_source: str = ""
    windows: dict[datetime, int] | None = None


def evaluate_canary(gate: CanaryComparisonGate, ctx: GateContext, data: GateData) -> GateVerdict:
    """The canaryComparison verdict over every table the canary and the baseline both map."""
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
    cols = ctx.canary_columns
    specs = {t.name: t for t in ctx.release.spec.tables}
    results: list[tuple[Verdict, str, dict[str, Any]]] = []
    skipped: dict[str, str] = {}
    for name in logical:
        spec = specs.get(name)
        if spec is not None:
            have = {c.name for c in spec.columns}
            missing = [c for c in cols.all_columns if c not in have]
            if missing:
                skipped[name] = f"lacks column(s) {', '.join(missing)}"
                continue
        results.append(_compare_table(gate, ctx, data, name))
    if not results:
        return _verdict(
            gate,
            Verdict.FAIL,
            "no mapped table has the compared columns " + ", ".join(cols.all_columns),
            {"skipped": skipped},
        )
    verdict = worst([r[0] for r in results])
    messages = [r[1] for r in results if r[0] is verdict]
    evidence: dict[str, Any] = {"tables": [r[2] for r in results]}
    if skipped:
        evidence["skipped"] = skipped
    return _verdict(gate, verdict, "; ".join(messages), evidence)


def _verdict(
    gate: CanaryComparisonGate, verdict: Verdict, message: str, evidence: dict[str, Any]
) -> GateVerdict:
    return GateVerdict(name=gate.name, type=gate.type, verdict=verdict, message=message, evidence=evidence)


# --- one table ------------------------------------------------------------------------------


def _compare_table(
    gate: CanaryComparisonGate, ctx: GateContext, data: GateData, logical: str
) -> tuple[Verdict, str, dict[str, Any]]:
    cols = ctx.canary_columns
    canary = _Side("canary", ctx.canary_tables[logical])
    baseline = _Side("baseline", ctx.baseline_tables[logical])
    ev: dict[str, Any] = {"table": logical, "canary_table": canary.table, "baseline_table": baseline.table}
    try:
        _read_windows(ctx, data, logical, canary, baseline, ev)
        windows = _closed_windows(gate, cols, logical, canary, baseline, ev)
        c_total, b_total, rel = _compare_counts(gate, logical, canary, baseline, windows, ev)

        values: dict[str, list[float]] = {}
        for side in (canary, baseline):
            sql = per_key_sql(side.table, cols, windows[0], windows[-1])
            ev[f"{side.label}_keys_sql"] = sql
            values[side.label] = _key_values(_run(data, sql), len(cols.keys), set(windows))
        mw = _mann_whitney(values["canary"], values["baseline"], gate.alpha)
        ev["mann_whitney"] = mw

        if abs(rel) > gate.tolerance:
            raise _Stop(
                Verdict.FAIL,
                f"{logical}: canary samples differ from the baseline by {rel:+.2%} over {len(windows)} "
                f"closed windows ({c_total} vs {b_total}; tolerance {gate.tolerance:.2%})",
            )
        p = mw.get("p_value")
        if isinstance(p, float) and p < gate.alpha:
            raise _Stop(
                Verdict.FAIL,
                f"{logical}: per-key {cols.value} distributions differ (Mann-Whitney U={mw['u']:.1f}, "
                f"p={p:.3g} < alpha {gate.alpha})",
            )
        return (
            Verdict.PASS,
            f"{logical}: canary matches the baseline over {len(windows)} closed windows "
            f"(samples {rel:+.2%}, Mann-Whitney p={_fmt_p(p)})",
            ev,
        )
    except _Stop as stop:
        return stop.verdict, stop.message, ev
    except SqlRefused as e:
        return Verdict.FAIL, f"{logical}: {e}", ev
    except TransientBackendError as e:
        return Verdict.INCONCLUSIVE, f"{logical}: {e}", ev
    except PermanentBackendError as e:
        return Verdict.FAIL, f"{logical}: {e}", ev


def _read_windows(
    ctx: GateContext, data: GateData, logical: str, canary: _Side, baseline: _Side, ev: dict[str, Any]
) -> None:
    """Steps 1 and 2: each side's watermark (its writer job's, else the end of its newest window)
    and its per-window sample totals."""
    cols = ctx.canary_columns
    writer = _writer_job(ctx, logical)
    for side, jobs in ((canary, ctx.jobs), (baseline, ctx.baseline_jobs)):
        if writer is not None and writer in jobs:
            _job_watermark(side, jobs[writer], data)
    since = ctx.now_utc - cols.lookback
    for side in (canary, baseline):
        sql = per_window_sql(side.table, cols, since)
        ev[f"{side.label}_windows_sql"] = sql
        side.windows = _window_totals(_run(data, sql))
        if not side.windows:
            raise _Stop(Verdict.INCONCLUSIVE, f"{logical}: the {side.label} has written no windows yet")
        if side.watermark is None:
            side.watermark = max(side.windows) + cols.window
            side.watermark_source = "data: end of the newest window"


def _closed_windows(
    gate: CanaryComparisonGate,
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
    first_complete = min(canary.windows) + cols.window
    windows = sorted(
        w for w in set(canary.windows) | set(baseline.windows) if first_complete <= w < closed_before
    )
    ev["windows"] = {
        "count": len(windows),
        "required": gate.min_closed_windows,
        "first": windows[0].isoformat() if windows else None,
        "last": windows[-1].isoformat() if windows else None,
        "closed_before": closed_before.isoformat(),
        "canary_first_complete": first_complete.isoformat(),
    }
    if len(windows) < gate.min_closed_windows:
        raise _Stop(
            Verdict.INCONCLUSIVE,
            f"{logical}: soaking, {len(windows)} of {gate.min_closed_windows} closed windows compared",
        )
    return windows


def _compare_counts(
    gate: CanaryComparisonGate,
    logical: str,
    canary: _Side,
    baseline: _Side,
    windows: list[datetime],
    ev: dict[str, Any],
) -> tuple[int, int, float]:
    """Step 4's figures: (canary samples, baseline samples, relative difference) over ``windows``;
    a baseline without samples stops the comparison here."""
    assert canary.windows is not None and baseline.windows is not None
    c_total = sum(canary.windows.get(w, 0) for w in windows)
    b_total = sum(baseline.windows.get(w, 0) for w in windows)
    ev["per_window"] = [
        [w.isoformat(), canary.windows.get(w, 0), baseline.windows.get(w, 0)]
        for w in windows[-MAX_WINDOWS_IN_EVIDENCE:]
    ]
    ev["canary_samples"] = c_total
    ev["baseline_samples"] = b_total
    ev["tolerance"] = gate.tolerance
    if b_total == 0:
        if c_total == 0:
            raise _Stop(Verdict.INCONCLUSIVE, f"{logical}: no samples in {len(windows)} closed windows")
        raise _Stop(Verdict.FAIL, f"{logical}: the baseline has no samples but the canary has {c_total}")
    rel = (c_total - b_total) / b_total
    ev["relative_difference"] = rel
    return c_total, b_total, rel


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


def _run(data: GateData, sql: str) -> list[tuple[Any, ...]]:
    return data.query(sql)


def _fmt_p(p: object) -> str:
    return f"{p:.3g}" if isinstance(p, float) else "n/a"


# --- SQL ------------------------------------------------------------------------------------


def _col(name: str) -> str:
    try:
        return ids.quote_presto(name)
    except ids.IdentifierError as e:
        raise SqlRefused(f"invalid column name in the canary comparison settings: {e}") from None


def timestamp_literal(t: datetime) -> str:
    """A Presto ``TIMESTAMP '…'`` literal of a datetime, in UTC (millisecond precision)."""
    naive = as_utc(t).replace(tzinfo=None)
    return "TIMESTAMP '" + naive.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "'"


def per_window_sql(table: str, cols: CanaryColumns, since: datetime) -> str:
    """Total samples per window start, from ``since`` on."""
    ws, samples = _col(cols.window_start), _col(cols.samples)
    # every name is a checked, quoted identifier and the literal is formatted from a datetime
    return (
        f"SELECT {ws}, sum({samples}) FROM {quoted_table(table)} "  # noqa: S608
        f"WHERE {ws} >= {timestamp_literal(since)} GROUP BY {ws}"
    )


def per_key_sql(table: str, cols: CanaryColumns, first: datetime, last: datetime) -> str:
    """Per (keys…, window start): total samples and the sample-weighted mean of the value column."""
    keys = ", ".join(_col(k) for k in cols.keys)
    ws, samples, value = _col(cols.window_start), _col(cols.samples), _col(cols.value)
    # every name is a checked, quoted identifier and the literals are formatted from datetimes
    return (
        f"SELECT {keys}, {ws}, sum({samples}), sum({value} * {samples}) / nullif(sum({samples}), 0) "  # noqa: S608
        f"FROM {quoted_table(table)} "
        f"WHERE {ws} >= {timestamp_literal(first)} AND {ws} <= {timestamp_literal(last)} "
        f"GROUP BY {keys}, {ws}"
    )


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


def _window_totals(rows: list[tuple[Any, ...]]) -> dict[datetime, int]:
    out: dict[datetime, int] = {}
    for row in rows:
        if row[0] is None:
            continue
        w = parse_timestamp(row[0])
        out[w] = out.get(w, 0) + int(row[1] or 0)
    return out


def _key_values(rows: list[tuple[Any, ...]], n_keys: int, windows: set[datetime]) -> list[float]:
    out: list[float] = []
    for row in rows:
        w, value = row[n_keys], row[n_keys + 2]
        if w is None or value is None or parse_timestamp(w) not in windows:
            continue
        f = float(value)
        if not math.isnan(f):
            out.append(f)
    return out


def _mann_whitney(canary: list[float], baseline: list[float], alpha: float) -> dict[str, Any]:
    ev: dict[str, Any] = {"n_canary": len(canary), "n_baseline": len(baseline), "alpha": alpha}
    if len(canary) < MIN_TEST_VALUES or len(baseline) < MIN_TEST_VALUES:
        ev["skipped"] = f"fewer than {MIN_TEST_VALUES} per-key values on a side"
        return ev
    res = mannwhitneyu(canary, baseline, alternative="two-sided")
    u, p = float(res.statistic), float(res.pvalue)
    ev["u"] = u
    # identical constant samples give NaN in some scipy versions: no evidence of a difference
    ev["p_value"] = 1.0 if math.isnan(p) else p
    return ev
