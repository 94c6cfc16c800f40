// The lineage graph of a stage, laid out left to right by dagre and drawn as SVG. Selecting a node
// lists the column lineage into it (edges carry the transform's output columns).
import dagre from "@dagrejs/dagre";
import type { Lineage } from "./api";
import { h, svg } from "./dom";

const W = 210;
const H = 44;

function label(name: string): string {
  return name.length > 30 ? `…${name.slice(-29)}` : name;
}

export function lineageGraph(g: Lineage): HTMLElement {
  if (!g.nodes.length) return h("p", { class: "empty", id: "lineage-none" }, `No lineage recorded at ${g.stage} yet.`);
  const layout = new dagre.graphlib.Graph();
  layout.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 60, marginx: 10, marginy: 10 });
  layout.setDefaultEdgeLabel(() => ({}));
  for (const n of g.nodes) layout.setNode(n.id, { width: W, height: H });
  for (const e of g.edges) layout.setEdge(e.from, e.to);
  dagre.layout(layout);
  const size = layout.graph();
  const width = (size.width ?? 400) + 20;
  const height = (size.height ?? 200) + 20;
  const root = svg("svg", { id: "lineage-graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }));
  defs.append(marker);
  root.append(defs);
  const detail = h("div", { class: "lineage-detail" }, "Select a node to see the column lineage into it.");
  for (const e of g.edges) {
    const pts = layout.edge(e.from, e.to)?.points ?? [];
    const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
    root.append(svg("path", { d, class: e.inferred ? "edge inferred" : "edge", "marker-end": "url(#arrow)" }));
  }
  for (const n of g.nodes) {
    const p = layout.node(n.id);
    const grp = svg("g", { class: `node kind-${n.kind}`, transform: `translate(${p.x - W / 2},${p.y - H / 2})`, "data-node": n.id, tabindex: 0 });
    grp.append(svg("rect", { width: W, height: H, rx: 6 }));
    const kind = svg("text", { x: 8, y: 16, class: "kind" });
    kind.textContent = n.kind;
    const name = svg("text", { x: 8, y: 34, class: "name" });
    name.textContent = label(n.name);
    const title = svg("title");
    title.textContent = n.name;
    grp.append(title, kind, name);
    grp.addEventListener("click", () => {
      const into = g.edges.filter((e) => e.to === n.id);
      const lines = into.map((e) => {
        const cols = e.columns.length ? `columns: ${e.columns.join(", ")}` : "no column lineage recorded";
        return h("li", {}, `${e.from} → ${n.kind} ${n.name}${e.inferred ? " (inferred)" : ""}: ${cols}`);
      });
      detail.replaceChildren(h("strong", {}, `${n.kind} ${n.name}`), lines.length ? h("ul", {}, ...lines) : h("p", {}, "a source: nothing flows into it"));
    });
    root.append(grp);
  }
  return h("div", { class: "lineage" }, h("div", { class: "lineage-scroll" }, root), detail,
    h("p", { class: "hint" }, "Dashed edges are inferred from naming (see docs/board.md), solid ones recorded."));
}
