// The releases overview: one lane per stage, a card per release at that stage.
import type { Gate, Release, StageStatus } from "./api";
import { age, h } from "./dom";

export const STAGE_ORDER = ["dev", "staging", "canary", "prod"];

export function stagesOf(items: Release[]): string[] {
  const seen = new Set<string>(STAGE_ORDER);
  for (const r of items) for (const s of Object.keys(r.status.stages ?? {})) seen.add(s);
  return [...seen];
}

export function gateSummary(gates: Gate[] | undefined): string {
  if (!gates || gates.length === 0) return "no gates yet";
  const passed = gates.filter((g) => g.verdict === "pass").length;
  const failed = gates.filter((g) => g.verdict === "fail").map((g) => g.name);
  const rest = gates.length - passed - failed.length;
  let text = `${passed}/${gates.length} gates passed`;
  if (failed.length) text += `; failed: ${failed.join(", ")}`;
  if (rest) text += `; ${rest} pending`;
  return text;
}

function card(name: string, st: StageStatus, stage: string): HTMLElement {
  const phase = st.phase ?? "Unknown";
  return h(
    "a",
    {
      class: `card phase-${phase}`, href: `#/release/${encodeURIComponent(name)}`,
      "data-release": name, "data-stage": stage, "data-version": st.version ?? "", "data-phase": phase,
      title: st.message ?? "",
    },
    h("div", { class: "card-head" }, h("strong", {}, name), h("span", { class: "version" }, st.version ?? "—")),
    h("div", { class: "card-phase" }, h("span", { class: "dot" }), phase, h("span", { class: "age" }, age(st.lastTransitionTime))),
    h("div", { class: "gates" }, gateSummary(st.gates)),
  );
}

export function renderOverview(root: HTMLElement, items: Release[]): void {
  const lanes = h("div", { class: "lanes" });
  for (const stage of stagesOf(items)) {
    const lane = h("section", { class: "lane", "data-lane": stage }, h("h2", {}, stage));
    const here = items.filter((r) => r.status.stages?.[stage]);
    for (const r of here) lane.append(card(r.name, r.status.stages![stage]!, stage));
    if (here.length === 0) lane.append(h("p", { class: "empty" }, "nothing here yet"));
    lanes.append(lane);
  }
  root.replaceChildren(
    h("h1", {}, "Releases"),
    h("p", { class: "hint" }, `${items.length} release(s); updates arrive live from the controller.`),
    lanes,
  );
}
