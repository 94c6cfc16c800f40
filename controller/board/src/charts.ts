// Gate evidence drawn with uPlot: the canary comparison's per-window counts (canary vs baseline)
// and the streaming-health gate's lag and event-time freshness over the runs.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { AuditRow, Gate } from "./api";
import { h } from "./dom";

type Table = Record<string, unknown> & {
  table?: string; per_window?: unknown[][]; per_window_columns?: string[];
  relative_difference?: number; tolerance?: number;
  mann_whitney?: { p_value?: number; alpha?: number; u?: number };
  metrics?: Array<{ column?: string; statistic?: string; verdict?: string; value?: number | null; threshold?: number }>;
};

const fmt = (v: unknown): string => (typeof v === "number" ? (Math.abs(v) < 1 && v !== 0 ? v.toPrecision(3) : String(Math.round(v * 100) / 100)) : String(v ?? "—"));

/** The newest canaryComparison verdict that carries per-window evidence, with its record. */
export function latestCanary(rows: AuditRow[]): { gate: Gate; row: AuditRow } | null {
  for (let i = rows.length - 1; i >= 0; i--) {
    for (const g of rows[i]!.record.gates ?? []) {
      const tables = (g.evidence?.["tables"] ?? []) as Table[];
      if (g.type === "canaryComparison" && tables.some((t) => Array.isArray(t.per_window) && t.per_window.length)) {
        return { gate: g, row: rows[i]! };
      }
    }
  }
  return null;
}

function lineChart(title: string, labels: string[], data: uPlot.AlignedData, width: number): HTMLElement {
  const box = h("div", { class: "chart" });
  const colours = ["#d9480f", "#1c7ed6", "#2b8a3e", "#862e9c"];
  const opts: uPlot.Options = {
    title, width, height: 240,
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colours[i % colours.length], width: 2, points: { show: true } }))],
    axes: [{}, {}],
  };
  new uPlot(opts, data, box);
  return box;
}

function statistics(t: Table): HTMLElement {
  const rows: HTMLElement[] = [];
  if (t.relative_difference !== undefined) {
    rows.push(h("tr", {}, h("td", {}, "samples"), h("td", {}, "relative difference"),
      h("td", {}, `${(t.relative_difference * 100).toFixed(2)}%`), h("td", {}, `±${((t.tolerance ?? 0) * 100).toFixed(2)}%`), h("td", {}, "")));
  }
  if (t.mann_whitney) {
    rows.push(h("tr", {}, h("td", {}, "means"), h("td", {}, "Mann-Whitney U p-value"),
      h("td", {}, fmt(t.mann_whitney.p_value)), h("td", {}, `α ${fmt(t.mann_whitney.alpha)}`), h("td", {}, "")));
  }
  for (const m of t.metrics ?? []) {
    // relative statistics read as percentages (a threshold of 0.02 is ±2.00%); p-values and D as numbers
    const rel = m.statistic === "relativeTotal" || m.statistic === "quantileShift";
    const pct = (v: unknown, sign = ""): string => (typeof v === "number" ? `${sign}${(v * 100).toFixed(2)}%` : "—");
    rows.push(h("tr", { class: `verdict-${m.verdict ?? ""}`, "data-statistic": m.statistic ?? "" },
      h("td", {}, m.column ?? ""), h("td", {}, m.statistic ?? ""),
      h("td", {}, rel ? pct(m.value) : fmt(m.value)), h("td", {}, rel ? pct(m.threshold, "±") : fmt(m.threshold)),
      h("td", {}, m.verdict ?? "")));
  }
  return h("table", { class: "stats" },
    h("thead", {}, h("tr", {}, h("th", {}, "column"), h("th", {}, "statistic"), h("th", {}, "value"), h("th", {}, "threshold"), h("th", {}, "verdict"))),
    h("tbody", {}, ...rows));
}

export function canaryEvidence(rows: AuditRow[], width: number): HTMLElement {
  const found = latestCanary(rows);
  if (!found) return h("p", { class: "empty", id: "canary-chart-none" }, "No canary comparison with per-window evidence recorded yet.");
  const out = h("div", { id: "canary-evidence" },
    h("p", { class: `verdict-${found.gate.verdict}` },
      `${found.gate.name} (${found.row.record.stage ?? ""}, ${found.row.record.version ?? ""}): ${found.gate.verdict} — ${found.gate.message ?? ""}`));
  for (const t of (found.gate.evidence?.["tables"] ?? []) as Table[]) {
    const pw = (t.per_window ?? []) as unknown[][];
    if (!pw.length) continue;
    // rows: [window, canary rows, baseline rows, then canary and baseline sums of each total column]
    // (controller/rollout/canary.py); the first total column (e.g. samples) is what a lost event
    // changes, so it is drawn when recorded, else the row counts
    const cols = t.per_window_columns ?? ["window", "canary_rows", "baseline_rows"];
    const [ci, bi] = cols.length >= 5 ? [3, 4] : [1, 2];
    const xs = pw.map((r) => Date.parse(String(r[0])) / 1000);
    const what = cols.length >= 5 ? String(cols[3]).replace(/^canary_/, "") : "rows";
    const chart = lineChart(`${t.table ?? ""}: ${what} per window, canary vs baseline`,
      [String(cols[ci] ?? "canary"), String(cols[bi] ?? "baseline")],
      [xs, pw.map((r) => Number(r[ci])), pw.map((r) => Number(r[bi]))], width);
    chart.id = "canary-chart";
    out.append(chart, statistics(t));
  }
  return out;
}

export function lagChart(rows: AuditRow[], stage: string, width: number): HTMLElement {
  const points: [number, number, number][] = [];
  for (const r of rows) {
    if (r.record.stage !== stage) continue;
    for (const g of r.record.gates ?? []) {
      if (g.type !== "streamingHealth") continue;
      for (const j of (g.evidence?.["jobs"] ?? []) as Record<string, unknown>[]) {
        const t = Date.parse(String(j["progress_time"] ?? r.record.finished_at ?? r.ts)) / 1000;
        points.push([t, Number(j["lag_seconds"] ?? NaN), Number(j["event_time_freshness_seconds"] ?? NaN)]);
      }
    }
  }
  if (!points.length) return h("p", { class: "empty" }, `No streaming-health evidence at ${stage} yet.`);
  points.sort((a, b) => a[0] - b[0]);
  const chart = lineChart(`${stage}: streaming lag and freshness (s) at each gate check`, ["lag s", "freshness s"],
    [points.map((p) => p[0]), points.map((p) => p[1]), points.map((p) => p[2])], width);
  chart.id = "lag-chart";
  return chart;
}
