// A release page: stages and gates, approving where the caller may, the gate evidence charts, the
// lineage graph of a stage and the audit timeline. Kept current by the overview's stream: a status
// change refetches the records and the caller's permissions.
import { Unauthorized, get, type AuditRow, type Lineage, type Permissions, type Release } from "./api";
import { approvals } from "./approve";
import { canaryEvidence, lagChart } from "./charts";
import { age, h, short } from "./dom";
import { lineageGraph } from "./lineage";
import { STAGE_ORDER, gateSummary } from "./overview";

function stageTable(r: Release): HTMLElement {
  const stages = Object.keys(r.status.stages ?? {}).sort((a, b) => STAGE_ORDER.indexOf(a) - STAGE_ORDER.indexOf(b));
  const body = stages.map((s) => {
    const st = r.status.stages![s]!;
    const gates = (st.gates ?? []).map((g) => h("li", { class: `verdict-${g.verdict}` }, `${g.name} (${g.type}): ${g.verdict} — ${g.message ?? ""}`));
    return h("tr", { "data-stage-row": s, class: `phase-${st.phase ?? "Unknown"}` },
      h("td", {}, s), h("td", {}, st.version ?? "—"), h("td", {}, h("span", { class: "dot" }), st.phase ?? "—"),
      h("td", {}, age(st.lastTransitionTime)), h("td", {}, short(st.gitCommit)),
      h("td", {}, h("div", {}, gateSummary(st.gates)), h("ul", { class: "gate-list" }, ...gates)));
  });
  return h("table", { class: "stages" },
    h("thead", {}, h("tr", {}, ...["stage", "version", "phase", "age", "commit", "gates"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...body));
}

// the record's actor: the approver of an approval, the caller of a manual rollback, else the controller
function principal(rec: AuditRow["record"]): string {
  return rec.actor ?? "—";
}

function timeline(rows: AuditRow[]): HTMLElement {
  const items = [...rows].reverse().map((r) => {
    const rec = r.record;
    const d = rec.details ?? {};
    const extra = rec.kind === "rollback" ? ` ${String(d["from"] ?? "?")} → ${String(d["to"] ?? "none")} (trigger ${String(d["trigger"] ?? "?")})` : "";
    return h("li", { class: `tl kind-${rec.kind} outcome-${rec.outcome ?? ""}`, "data-seq": String(r.seq) },
      h("time", { datetime: rec.finished_at ?? r.ts, title: rec.finished_at ?? r.ts }, new Date(rec.finished_at ?? r.ts).toLocaleString()),
      h("span", { class: "tl-kind" }, rec.kind),
      h("span", {}, `${rec.stage ?? "all"} ${rec.version ?? ""}`),
      h("span", { class: "tl-outcome" }, rec.outcome ?? ""),
      h("span", { class: "tl-commit", title: rec.git_commit ?? "" }, short(rec.git_commit)),
      h("span", { class: "tl-who" }, principal(rec)),
      h("span", { class: "tl-msg" }, [rec.message, extra.trim()].filter(Boolean).join(" · ")));
  });
  return h("ol", { id: "audit-timeline", class: "timeline" }, ...items);
}

export class ReleasePage {
  private last = "";
  private stage: string;
  private rows: AuditRow[] = [];
  private readonly head = h("div");
  private readonly approve = h("div", { id: "approvals" });
  private readonly approveResult = h("p", { id: "approve-result", class: "approve-result", role: "status" });
  private readonly evidence = h("div");
  private readonly lag = h("div");
  private readonly graph = h("div");
  private readonly stagePick = h("div", { class: "stage-pick" });
  private readonly history = h("div");

  constructor(private readonly root: HTMLElement, readonly name: string, stage: string | null,
              private readonly fail: (e: unknown) => void) {
    this.stage = stage ?? "";
    root.replaceChildren(
      h("p", {}, h("a", { href: "#/" }, "← all releases")),
      h("h1", {}, name), this.head,
      h("h2", {}, "Approvals"), this.approve, this.approveResult,
      h("h2", {}, "Gate evidence"), this.evidence,
      h("h2", {}, "Lineage and streaming health"), this.stagePick, this.graph, this.lag,
      h("h2", {}, "Audit timeline"),
      h("p", { class: "hint" }, "Runs, approvals and rollbacks from the hash-chained audit ledger, newest first."),
      this.history);
  }

  update(r: Release | undefined): void {
    if (!r) { this.head.replaceChildren(h("p", { class: "error" }, `release ${this.name} not found`)); return; }
    const text = JSON.stringify(r.status);
    if (text === this.last) return;
    this.last = text;
    if (!this.stage) this.stage = r.status.currentStage ?? Object.keys(r.status.stages ?? {})[0] ?? "dev";
    this.head.replaceChildren(
      h("p", { class: `phase-${r.status.phase ?? "Unknown"}` }, h("span", { class: "dot" }),
        `${r.status.version ?? "—"} ${r.status.phase ?? ""} (current stage ${r.status.currentStage ?? "—"})`),
      stageTable(r));
    const stages = Object.keys(r.status.stages ?? {}).sort((a, b) => STAGE_ORDER.indexOf(a) - STAGE_ORDER.indexOf(b));
    this.stagePick.replaceChildren(...stages.map((s) => {
      const b = h("button", { type: "button", class: s === this.stage ? "on" : "", "data-pick": s }, s);
      b.addEventListener("click", () => { this.stage = s; this.last = ""; this.update(r); });
      return b;
    }));
    this.refresh().catch(this.fail);
  }

  private async refresh(): Promise<void> {
    const base = `/api/v1/releases/${encodeURIComponent(this.name)}`;
    const [audit, lineage] = await Promise.all([
      get<{ records: AuditRow[] }>(`${base}/audit`),
      get<Lineage>(`${base}/lineage?stage=${encodeURIComponent(this.stage)}`),
      this.refreshApprovals(base),
    ]);
    this.rows = audit.records;
    const width = Math.max(360, Math.min(900, this.root.clientWidth - 40));
    this.evidence.replaceChildren(canaryEvidence(this.rows, width));
    this.graph.replaceChildren(h("h3", {}, `Lineage at ${lineage.stage} (${lineage.version ?? "no version yet"})`), lineageGraph(lineage));
    this.lag.replaceChildren(lagChart(this.rows, this.stage, width));
    this.history.replaceChildren(timeline(this.rows));
  }

  // A failure here (e.g. 503 before the controller has read git) is shown in the section and leaves
  // the rest of the page drawn; after an approval, ask again (the stage waits until the next pass).
  private async refreshApprovals(base: string): Promise<void> {
    try {
      const perm = await get<Permissions>(`${base}/permissions`);
      this.approve.replaceChildren(approvals(perm, this.approveResult, () => { this.refresh().catch(this.fail); }, this.fail));
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      this.approve.replaceChildren(h("p", { class: "error" }, `approvals unavailable: ${e instanceof Error ? e.message : String(e)}`));
    }
  }
}
