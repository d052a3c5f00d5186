// buildGraph turns flows into the service map's graph: pods grouped by their
// controller, services shown only when no backend of theirs was seen
// (a ClusterIP flow is drawn as its post-NAT pod-to-pod flow), tunnel
// (outer) flows left out.
import type { Endpoint, Flow } from "../api";

export interface MapNode {
  id: string;
  label: string;
  kind: "pod" | "service" | "node" | "ext";
  namespace?: string;
  inConns: number;
  outConns: number;
  filter: string; // flows of this node
  inventory?: string; // inventory filter selecting it
}
export interface MapEdge {
  id: string;
  source: string;
  target: string;
  ports: Set<string>;
  conns: number;
  bytes: number;
  flows: number;
  filter: string;
}
export interface Graph {
  nodes: Map<string, MapNode>;
  edges: Map<string, MapEdge>;
  flows: number;
}

const qs = JSON.stringify;

function group(e: Endpoint, side: "src" | "dst"): Omit<MapNode, "inConns" | "outConns"> {
  if (e.kind === "pod" && e.owner) {
    const id = `${e.namespace}/${e.owner.kind}/${e.owner.name}`;
    return {
      id,
      label: e.owner.name,
      kind: "pod",
      namespace: e.namespace,
      filter: `${side}.namespace = ${qs(e.namespace)} and ${side}.owner.name = ${qs(e.owner.name)}`,
      inventory: `namespace = ${qs(e.namespace)} and owner.name = ${qs(e.owner.name)}`,
    };
  }
  if (e.kind && e.name) {
    const k = e.kind === "pod" ? "pod" : e.kind === "service" ? "service" : e.kind === "node" ? "node" : "ext";
    return {
      id: `${e.namespace ?? ""}/${e.kind}/${e.name}`,
      label: e.name,
      kind: k,
      namespace: e.namespace,
      filter: `${side}.workload = ${qs(e.workload ?? "")}`,
      inventory: e.workload ? `id = ${qs(e.workload)}` : undefined,
    };
  }
  return { id: "ip/" + e.ip, label: e.ip, kind: "ext", filter: `${side}.ip = ${e.ip}` };
}

// drawn says whether a flow is drawn: tunnel (outer) flows are not, nor a
// flow to a ClusterIP with a NAT-related flow (the related flow is the call).
const drawn = (f: Flow) => !f.tunnel && !(f.dst.kind === "service" && (f.related ?? []).some((r) => r.reason === "clusterip-dnat"));

// edgeOf is the id of the map edge a flow is drawn as (undefined: not drawn).
export function edgeOf(f: Flow): string | undefined {
  return drawn(f) ? group(f.src, "src").id + " → " + group(f.dst, "dst").id : undefined;
}

// The analysis verdicts an edge can carry, the worst first: an edge shows
// the worst verdict among its flows.
export const EDGE_VERDICTS = ["escaped", "misdropped", "rejected", "permitted"] as const;
export type EdgeVerdict = (typeof EDGE_VERDICTS)[number];
export type VerdictCounts = Partial<Record<EdgeVerdict | "unscoped", number>>;

// edgeVerdicts counts the verdicts of analyzed flows per map edge.
export function edgeVerdicts(fvs: { flow: Flow; verdict: string }[]): Map<string, VerdictCounts> {
  const out = new Map<string, VerdictCounts>();
  for (const fv of fvs) {
    const id = edgeOf(fv.flow);
    if (!id) continue;
    let c = out.get(id);
    if (!c) out.set(id, (c = {}));
    const v = fv.verdict as EdgeVerdict | "unscoped";
    c[v] = (c[v] ?? 0) + 1;
  }
  return out;
}

// worst is the verdict an edge is coloured by ("" when no flow of it was
// decided by a scope).
export const worst = (c?: VerdictCounts): EdgeVerdict | "" => EDGE_VERDICTS.find((v) => (c?.[v] ?? 0) > 0) ?? "";

export function buildGraph(flows: Flow[]): Graph {
  const nodes = new Map<string, MapNode>();
  const edges = new Map<string, MapEdge>();
  let n = 0;
  for (const f of flows) {
    if (!drawn(f)) continue;
    n++;
    const s = group(f.src, "src");
    const d = group(f.dst, "dst");
    for (const [g, side] of [
      [s, "src"],
      [d, "dst"],
    ] as const) {
      let node = nodes.get(g.id);
      if (!node) nodes.set(g.id, (node = { ...g, filter: g.filter.replace(new RegExp(`\\b${side}\\.`, "g"), "§"), inConns: 0, outConns: 0 }));
      if (side === "src") node.outConns += f.conns;
      else node.inConns += f.conns;
    }
    const id = s.id + " → " + d.id;
    let e = edges.get(id);
    if (!e) edges.set(id, (e = { id, source: s.id, target: d.id, ports: new Set(), conns: 0, bytes: 0, flows: 0, filter: `${s.filter} and ${d.filter}` }));
    e.ports.add(`${f.dst.port ?? ""}/${f.proto}`);
    e.conns += f.conns;
    e.bytes += f.fwdBytes + f.revBytes;
    e.flows++;
  }
  // A node's flows are those where it is either end.
  for (const node of nodes.values()) node.filter = `(${node.filter.replace(/§/g, "src.")}) or (${node.filter.replace(/§/g, "dst.")})`;
  return { nodes, edges, flows: n };
}
