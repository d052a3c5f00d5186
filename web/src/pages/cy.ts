// Cytoscape.js rendering of the service map (its own chunk: loaded with the
// map page only).
import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { bytes, num } from "../format";
import type { Graph } from "./mapgraph";

cytoscape.use(fcose);

// Cytoscape injects a <style> element (".__________cytoscape_container
// { position: relative }") unless an element with this id exists. The CSP
// forbids inline styles, so the rule lives in style.css and a placeholder
// tells Cytoscape it is there.
const STYLESHEET_ID = "__________cytoscape_stylesheet";
if (!document.getElementById(STYLESHEET_ID)) {
  const m = document.createElement("meta");
  m.id = STYLESHEET_ID;
  document.head.appendChild(m);
}

// Positions of the large maps' nodes laid out in this page (by node id,
// kept until the page is reloaded): a map whose nodes were all laid out
// before — another time range or filter over the same workloads — is drawn
// at those positions at once, without a layout. The fine layout always
// runs (it is asked for).
const known = new Map<string, { x: number; y: number }>();
const maxKnown = 20000;

const css = (n: string) => getComputedStyle(document.documentElement).getPropertyValue(n).trim();

export async function renderGraph(container: HTMLElement, g: Graph, fine: boolean, onTap: (id: string, kind: "node" | "edge" | "bg") => void) {
  const maxConns = Math.max(1, ...[...g.edges.values()].map((e) => e.conns));
  const elements: cytoscape.ElementDefinition[] = [];
  for (const n of g.nodes.values()) elements.push({ group: "nodes", data: { id: n.id, label: n.label, kind: n.kind } });
  for (const e of g.edges.values())
    elements.push({
      group: "edges",
      data: {
        id: e.id,
        source: e.source,
        target: e.target,
        label: [...e.ports].map((p) => p.replace(/\/tcp$/, "")).join(", "),
        w: 1 + 5 * Math.sqrt(e.conns / maxConns),
        title: `${num(e.conns)} conns, ${bytes(e.bytes)}`,
      },
    });
  const fg = css("--fg"),
    muted = css("--muted"),
    accent = css("--accent"),
    bg = css("--bg");
  const verdictColour = { escaped: css("--bad"), misdropped: css("--accent2"), rejected: css("--warn"), permitted: css("--ok") };
  const big = g.nodes.size > 150;
  const layoutOpts = {
    name: "fcose",
    // Above 150 workloads the spectral (draft) phase alone lays them out
    // well enough, in a fraction of the force-directed refinement's time.
    quality: big && !fine ? "draft" : "default",
    randomize: true,
    animate: false,
    nodeRepulsion: () => 9000,
    idealEdgeLength: () => 90,
    nodeSeparation: 80,
    packComponents: !big,
    fit: true,
    padding: 30,
  } as any;
  performance.mark("palisade:map-layout-start");
  const reuse = big && !fine && [...g.nodes.keys()].every((id) => known.has(id));
  if (reuse) {
    for (const e of elements) if (e.group === "nodes") e.position = { ...known.get(e.data.id as string)! };
    performance.mark("palisade:map-layout-end");
  } else if (big) {
    // Lay out on a headless, style-less copy (no style recomputation per
    // moved node), then draw once at the computed positions.
    const h = cytoscape({ headless: true, styleEnabled: false, elements: elements.map((e) => ({ ...e, data: { ...e.data } })) });
    h.layout({ ...layoutOpts, fit: false }).run();
    const pos = new Map(h.nodes().map((n) => [n.id(), { ...n.position() }]));
    h.destroy();
    if (known.size + pos.size > maxKnown) known.clear();
    for (const e of elements) {
      if (e.group !== "nodes") continue;
      e.position = pos.get(e.data.id as string);
      known.set(e.data.id as string, { ...e.position! });
    }
    performance.mark("palisade:map-layout-end");
  }
  const cy = cytoscape({
    container,
    elements,
    minZoom: 0.05,
    maxZoom: 4,
    boxSelectionEnabled: false,
    textureOnViewport: big,
    hideEdgesOnViewport: big,
    style: [
      {
        selector: "node",
        style: {
          // Above 150 nodes labels show for the selection and its
          // neighbours only: measuring 500 labels costs seconds.
          label: big ? "" : "data(label)",
          color: fg,
          "font-size": 11,
          "text-valign": "bottom",
          "text-margin-y": 4,
          "text-outline-color": bg,
          "text-outline-width": 2,
          width: 26,
          height: 26,
          "background-color": css("--node-pod"),
          "border-width": 1,
          "border-color": fg,
        },
      },
      { selector: "node[kind = 'service']", style: { shape: "round-rectangle", "background-color": css("--node-svc") } },
      { selector: "node[kind = 'node']", style: { shape: "hexagon", "background-color": css("--node-node") } },
      { selector: "node[kind = 'ext']", style: { shape: "diamond", "background-color": css("--node-ext") } },
      {
        selector: "edge",
        style: {
          width: "data(w)",
          "curve-style": "bezier",
          "target-arrow-shape": "triangle",
          "line-color": muted,
          "target-arrow-color": muted,
          label: big ? "" : "data(label)",
          "font-size": 9,
          color: fg,
          "text-background-color": bg,
          "text-background-opacity": 0.8,
          "text-background-padding": "1px",
          "text-rotation": "autorotate",
        },
      },
      // Coloured by analysis verdict when a policy version is chosen
      // (setVerdicts).
      ...(["escaped", "misdropped", "rejected", "permitted"] as const).map((v) => ({
        selector: `edge[verdict = "${v}"]`,
        style: { "line-color": verdictColour[v], "target-arrow-color": verdictColour[v] },
      })),
      { selector: 'edge[verdict = "unscoped"]', style: { "line-style": "dashed" } },
      { selector: "node.near, node:selected", style: { label: "data(label)" } },
      { selector: ":selected", style: { "line-color": accent, "target-arrow-color": accent, "background-color": accent, "border-width": 3 } },
    ],
    layout: { name: "preset", fit: false },
  });
  performance.mark("palisade:map-created");
  cy.on("tap", (ev) => {
    if (ev.target === cy) onTap("", "bg");
    else onTap(ev.target.id(), ev.target.isNode() ? "node" : "edge");
  });
  // The selection's neighbours get their labels too.
  cy.on("select unselect", "node", () => {
    cy.batch(() => {
      cy.nodes(".near").removeClass("near");
      cy.nodes(":selected").neighborhood("node").addClass("near");
    });
  });
  if (big) {
    // cy.fit() would measure every edge's curve: fit the node positions.
    let x1 = Infinity,
      y1 = Infinity,
      x2 = -Infinity,
      y2 = -Infinity;
    for (const e of elements) {
      if (!e.position) continue;
      x1 = Math.min(x1, e.position.x);
      y1 = Math.min(y1, e.position.y);
      x2 = Math.max(x2, e.position.x);
      y2 = Math.max(y2, e.position.y);
    }
    if (x1 <= x2) {
      const pad = 40;
      const zoom = Math.min((container.clientWidth - 2 * pad) / Math.max(1, x2 - x1), (container.clientHeight - 2 * pad) / Math.max(1, y2 - y1));
      cy.viewport({ zoom, pan: { x: container.clientWidth / 2 - zoom * (x1 + x2) / 2, y: container.clientHeight / 2 - zoom * (y1 + y2) / 2 } });
    }
    performance.mark("palisade:map-drawn");
  } else {
    await new Promise<void>((resolve) => {
      const layout = cy.layout(layoutOpts);
      layout.one("layoutstop", () => resolve());
      layout.run();
    });
  }
  return cy;
}

// setVerdicts colours the edges by their analysis verdict (the worst among
// their flows; "unscoped": no scope decided them; absent: no verdict shown).
export function setVerdicts(cy: cytoscape.Core, verdicts: Map<string, string>) {
  cy.batch(() => {
    cy.edges().forEach((e) => {
      const v = verdicts.get(e.id());
      if (v) e.data("verdict", v);
      else e.removeData("verdict");
    });
  });
}
