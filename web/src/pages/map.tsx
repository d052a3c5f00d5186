// The service map: workloads as nodes, observed calls as edges (with their
// ports and volumes), for a namespace, a flow filter and a time range. The
// graph library (Cytoscape.js with the fCoSE layout) is loaded only when the
// page is opened.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, Flow, FlowVerdict, q, ScopeView, Workload } from "../api";
import { DataTable, ErrorBox, Loading } from "../components";
import { FilterBox } from "../filterbox";
import { bytes, num } from "../format";
import { href, Route, setParams } from "../router";
import { TimeRange } from "../timerange";
import { useApi } from "../hooks";
import { LIMIT, useFlowCompletion } from "./flows";
import type { Graph, MapNode, MapEdge, VerdictCounts } from "./mapgraph";
import { buildGraph, EDGE_VERDICTS, edgeVerdicts, worst } from "./mapgraph";

type Selected = { node?: MapNode; edge?: MapEdge };

export function MapPage({ route }: { route: Route }) {
  const p = route.params;
  const ns = p.get("ns") ?? "";
  const filter = p.get("filter") ?? "";
  const from = p.get("from") ?? "15m";
  const to = p.get("to") ?? "";
  const fine = p.get("layout") === "fine";
  // policy is "SCOPE@VERSION": the edges are coloured by the analysis of
  // that version over the map's range.
  const policy = p.get("policy") ?? "";
  const [text, setText] = useState(filter);
  useEffect(() => setText(filter), [filter]);
  const fc = useFlowCompletion();
  const nsList = useApi(() => api<{ items: Workload[] }>("/api/v1/inventory" + q({ filter: "kind = namespace" })), []);
  const [res, setRes] = useState<{ flows?: Flow[]; error?: ApiError; loading: boolean }>({ loading: true });
  const go = (x: Record<string, string>) => setParams({ ns, filter, from, to, layout: fine ? "fine" : undefined, policy, ...x });
  const scopes = useApi(() => api<ScopeView[]>("/api/v1/scopes"), []);
  const verdicts = useVerdicts(policy, from, to);
  useEffect(() => {
    let live = true;
    const nsf = ns ? `(src.namespace = ${JSON.stringify(ns)} or dst.namespace = ${JSON.stringify(ns)})` : "";
    const f = [nsf, filter ? `(${filter})` : ""].filter(Boolean).join(" and ");
    setRes((r) => ({ ...r, loading: true }));
    api<{ flows: Flow[] }>("/api/v1/flows" + q({ filter: f, from, to, limit: LIMIT })).then(
      (r) => live && setRes({ flows: r.flows ?? [], loading: false }),
      (e) => live && setRes({ error: e, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [ns, filter, from, to]);
  const graph = useMemo(() => (res.flows ? buildGraph(res.flows) : undefined), [res.flows]);
  const namespaces = (nsList.data?.items ?? []).map((w) => w.name).sort();
  const [sel, setSel] = useState<Selected>({});
  const filterError = res.error?.position ? res.error : undefined;
  return (
    <>
      <div class="page-head">
        <h1>Service map</h1>
        <p class="muted">Who talks to whom: workloads (pods grouped by their controller) and the calls observed between them. Click a node or an edge for its flows.</p>
      </div>
      <div class="toolbar">
        <label>
          namespace{" "}
          <select value={ns} onChange={(e) => go({ ns: e.currentTarget.value })} data-testid="map-namespace">
            <option value="">all</option>
            {[...new Set([ns, ...namespaces].filter(Boolean))].map((n) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </label>
        <TimeRange from={from} to={to} onChange={(f, t) => go({ from: f, to: t })} />
        <label title="Colour the calls by the analysis of a policy version over this range (Permitted, Escaped, Rejected, Misdropped)">
          policy{" "}
          <select value={policy} onChange={(e) => go({ policy: e.currentTarget.value })} data-testid="map-policy">
            <option value="">none</option>
            {(scopes.data ?? []).flatMap((s) =>
              s.versions.map((v) => (
                <option value={`${s.name}@${v.version}`}>
                  {s.name} {v.version} ({s.enforced === v.version ? "enforced" : v.state})
                </option>
              )),
            )}
          </select>
        </label>
        <label title="Large maps (over 150 workloads) get a fast layout; the fine one refines it and takes longer">
          layout{" "}
          <select value={fine ? "fine" : "auto"} onChange={(e) => go({ layout: e.currentTarget.value === "fine" ? "fine" : "" })}>
            <option value="auto">fast</option>
            <option value="fine">fine</option>
          </select>
        </label>
      </div>
      <FilterBox label="flow filter for the map" value={text} onChange={setText} onSubmit={(v) => go({ filter: v.trim() })} schema={fc.schema} values={fc.values} onFocus={fc.load} error={filterError} />
      {res.error && !filterError && <ErrorBox error={res.error} />}
      {verdicts.error && <ErrorBox error={verdicts.error} />}
      {res.loading && !graph && <Loading what="flows for the map" />}
      {graph && (
        <>
          <div class="map-wrap">
            <GraphView graph={graph} onSelect={setSel} fine={fine} verdicts={verdicts.byEdge} />
            <aside class="card map-side" aria-live="polite">
              <Side graph={graph} sel={sel} from={from} to={to} truncated={(res.flows?.length ?? 0) >= LIMIT} policy={policy} verdicts={verdicts} />
            </aside>
          </div>
          <EdgeTable graph={graph} from={from} to={to} verdicts={verdicts.byEdge} />
        </>
      )}
    </>
  );
}

type Verdicts = { byEdge?: Map<string, VerdictCounts>; loading: boolean; error?: ApiError };

// analysisRange turns the map's range into the analysis API's parameters.
const analysisRange = (from: string, to: string) => {
  const rel = /^\d+(\.\d+)?(s|m|h)$/.test(from);
  const abs = (v: string) => (/^\d+(\.\d+)?$/.test(v) ? new Date(Number(v) * 1000).toISOString() : v);
  return rel && !to ? { since: from } : { from: rel ? new Date(Date.now() - Number(from.slice(0, -1)) * { s: 1e3, m: 60e3, h: 3600e3 }[from.slice(-1) as "s"]).toISOString() : abs(from), to: to ? abs(to) : undefined };
};

// useVerdicts loads the analysis of policy ("SCOPE@VERSION") over the
// range: every analyzed flow's verdict, counted per map edge.
function useVerdicts(policy: string, from: string, to: string): Verdicts {
  const [scope, version] = policy.split("@");
  const v = useApi(
    () => (policy ? api<FlowVerdict[]>("/api/v1/analysis/flows" + q({ scope, version, ...analysisRange(from, to), limit: LIMIT })).then(edgeVerdicts) : Promise.resolve(undefined)),
    [policy, from, to],
  );
  return { byEdge: policy ? v.data : undefined, loading: v.loading, error: v.error };
}

function VerdictLegend({ graph, policy, verdicts }: { graph: Graph; policy: string; verdicts: Verdicts }) {
  if (!policy) return null;
  if (verdicts.loading || !verdicts.byEdge) return verdicts.error ? null : <Loading what={`the analysis of ${policy.replace("@", " ")}`} />;
  const n: Record<string, number> = {};
  for (const id of graph.edges.keys()) {
    const v = worst(verdicts.byEdge.get(id)) || "none";
    n[v] = (n[v] ?? 0) + 1;
  }
  const [scope, version] = policy.split("@");
  return (
    <>
      <h3 class="small">Calls by verdict of {scope} {version}</h3>
      <ul class="legend small" data-testid="verdict-legend">
        {EDGE_VERDICTS.map((v) => (
          <li data-verdict={v} data-count={n[v] ?? 0}>
            <span class={"lg edge v-" + v} /> <span class={"verdict v-" + v}>{v}</span>: {num(n[v] ?? 0)}
          </li>
        ))}
        <li data-verdict="none" data-count={n.none ?? 0}>
          <span class="lg edge" /> no scope decided it: {num(n.none ?? 0)}
        </li>
      </ul>
      <p class="muted small">
        An edge shows the worst verdict of its flows. <a href={href(["policies"], { scope, tab: "analysis", version })}>The analysis</a>
      </p>
    </>
  );
}

function Side({ graph, sel, from, to, truncated, policy, verdicts }: { graph: Graph; sel: Selected; from: string; to: string; truncated: boolean; policy: string; verdicts: Verdicts }) {
  if (sel.edge) {
    const e = sel.edge;
    const vc = verdicts.byEdge?.get(e.id);
    return (
      <>
        <h2>Call</h2>
        <p>
          <strong>{graph.nodes.get(e.source)?.label}</strong> → <strong>{graph.nodes.get(e.target)?.label}</strong>
        </p>
        <dl class="kv">
          <dt>ports</dt>
          <dd>{[...e.ports].join(", ")}</dd>
          <dt>connections</dt>
          <dd>{num(e.conns)}</dd>
          <dt>bytes</dt>
          <dd>{bytes(e.bytes)}</dd>
          <dt>flows</dt>
          <dd>{num(e.flows)}</dd>
          {policy && vc && (
            <>
              <dt>verdicts</dt>
              <dd data-testid="edge-verdicts">
                {EDGE_VERDICTS.filter((v) => vc[v]).map((v) => (
                  <div>
                    <span class={"verdict v-" + v}>{v}</span> {num(vc[v]!)}
                  </div>
                ))}
                {vc.unscoped ? <div class="muted">unscoped {num(vc.unscoped)}</div> : null}
              </dd>
            </>
          )}
        </dl>
        <a class="button" href={href(["flows"], { filter: e.filter, from, to })}>
          Show these flows
        </a>
      </>
    );
  }
  if (sel.node) {
    const n = sel.node;
    return (
      <>
        <h2>{n.label}</h2>
        <p class="muted">{n.kind}</p>
        <dl class="kv">
          <dt>in</dt>
          <dd>{num(n.inConns)} connections</dd>
          <dt>out</dt>
          <dd>{num(n.outConns)} connections</dd>
        </dl>
        <a class="button" href={href(["flows"], { filter: n.filter, from, to })}>
          Show its flows
        </a>{" "}
        {n.inventory && (
          <a class="button secondary" href={href(["inventory"], { filter: n.inventory })}>
            In the inventory
          </a>
        )}
      </>
    );
  }
  return (
    <>
      <h2>Map</h2>
      <p data-testid="map-summary">
        {num(graph.nodes.size)} workloads, {num(graph.edges.size)} calls from {num(graph.flows)} flows{truncated ? " (the first " + num(LIMIT) + ")" : ""}.
      </p>
      <p class="muted small">Select a node or an edge (click, or Tab to the map and use the arrow keys) to see its traffic.</p>
      <ul class="legend small">
        <li>
          <span class="lg pod" /> workload (pods of a controller)
        </li>
        <li>
          <span class="lg service" /> service without observed backends
        </li>
        <li>
          <span class="lg node" /> node
        </li>
        <li>
          <span class="lg ext" /> outside the inventory
        </li>
      </ul>
      <VerdictLegend graph={graph} policy={policy} verdicts={verdicts} />
    </>
  );
}

function GraphView({ graph, onSelect, fine, verdicts }: { graph: Graph; onSelect: (s: Selected) => void; fine: boolean; verdicts?: Map<string, VerdictCounts> }) {
  const el = useRef<HTMLDivElement>(null);
  const [ready, setReady] = useState(0);
  const [coloured, setColoured] = useState<number>();
  const [err, setErr] = useState<string>();
  const [layoutMs, setLayoutMs] = useState<number>();
  const cyRef = useRef<any>(null);
  const order = useRef<string[]>([]);
  const cursor = useRef(-1);
  useEffect(() => {
    let dead = false;
    (async () => {
      performance.mark("palisade:map-import");
      const { renderGraph } = await import("./cy");
      if (dead || !el.current) return;
      const t0 = performance.now();
      const cy = await renderGraph(el.current, graph, fine, (id, kind) => {
        if (kind === "node") onSelect({ node: graph.nodes.get(id) });
        else if (kind === "edge") onSelect({ edge: graph.edges.get(id) });
        else onSelect({});
      });
      if (dead) {
        cy.destroy();
        return;
      }
      setLayoutMs(performance.now() - t0);
      cyRef.current = cy;
      order.current = [...graph.nodes.keys(), ...graph.edges.keys()];
      setReady((r) => r + 1);
    })().catch((e) => setErr(String(e)));
    return () => {
      dead = true;
      cyRef.current?.destroy();
      cyRef.current = null;
    };
  }, [graph, fine]);
  useEffect(() => {
    const cy = cyRef.current;
    if (!cy) return;
    const m = new Map<string, string>();
    if (verdicts) for (const id of graph.edges.keys()) m.set(id, worst(verdicts.get(id)) || "unscoped");
    import("./cy").then(({ setVerdicts }) => {
      if (cyRef.current !== cy) return;
      setVerdicts(cy, m);
      setColoured(verdicts ? [...m.values()].filter((v) => v !== "unscoped").length : undefined);
    });
  }, [verdicts, ready]);
  const move = (d: number) => {
    const cy = cyRef.current;
    if (!cy || !order.current.length) return;
    cursor.current = (cursor.current + d + order.current.length) % order.current.length;
    const id = order.current[cursor.current];
    cy.elements().unselect();
    const ele = cy.getElementById(id);
    ele.select();
    cy.animate({ center: { eles: ele }, duration: 150 });
    if (graph.nodes.has(id)) onSelect({ node: graph.nodes.get(id) });
    else onSelect({ edge: graph.edges.get(id) });
  };
  return (
    <div class="map-box">
      {err && <div class="error">{err}</div>}
      <div
        class="map"
        ref={el}
        tabIndex={0}
        role="application"
        aria-label="service map; arrow keys move between workloads and calls, Escape clears"
        data-testid="service-map"
        data-nodes={graph.nodes.size}
        data-edges={graph.edges.size}
        data-layout-ms={layoutMs === undefined ? "" : Math.round(layoutMs)}
        data-coloured={coloured ?? ""}
        onKeyDown={(e) => {
          if (e.key === "ArrowRight" || e.key === "ArrowDown") (e.preventDefault(), move(1));
          else if (e.key === "ArrowLeft" || e.key === "ArrowUp") (e.preventDefault(), move(-1));
          else if (e.key === "Escape") {
            cyRef.current?.elements().unselect();
            onSelect({});
          } else if (e.key === "Enter" && cursor.current >= 0) {
            const id = order.current[cursor.current];
            const f = graph.nodes.get(id)?.filter ?? graph.edges.get(id)?.filter;
            if (f) location.hash = href(["flows"], { filter: f });
          }
        }}
      />
      <div class="muted small map-foot">{layoutMs !== undefined ? `laid out ${num(graph.nodes.size)} nodes in ${Math.round(layoutMs)} ms` : "laying out…"}</div>
    </div>
  );
}

// EdgeTable is the map as text: every call with its ports and volume (for
// keyboard and screen-reader users, and for export).
function EdgeTable({ graph, from, to, verdicts }: { graph: Graph; from: string; to: string; verdicts?: Map<string, VerdictCounts> }) {
  const label = (id: string) => {
    const n = graph.nodes.get(id);
    return n ? (n.namespace ? `${n.namespace}/${n.label}` : n.label) : id;
  };
  return (
    <details class="card" data-testid="map-edges">
      <summary>Calls as a table ({num(graph.edges.size)})</summary>
      <DataTable
        caption="calls on the map"
        rows={[...graph.edges.values()]}
        csv="palisade-service-map.csv"
        initialSort={["conns", -1]}
        cols={[
          { key: "src", title: "From", value: (e: MapEdge) => label(e.source), render: (e) => <span data-testid="map-edge" data-source={graph.nodes.get(e.source)?.label} data-target={graph.nodes.get(e.target)?.label}>{label(e.source)}</span> },
          { key: "dst", title: "To", value: (e) => label(e.target) },
          { key: "ports", title: "Ports", value: (e) => [...e.ports].join(" ") },
          ...(verdicts
            ? [
                {
                  key: "verdict",
                  title: "Verdict",
                  value: (e: MapEdge) => worst(verdicts.get(e.id)),
                  render: (e: MapEdge) => {
                    const v = worst(verdicts.get(e.id));
                    return v ? <span class={"verdict v-" + v} data-testid="edge-verdict" data-source={graph.nodes.get(e.source)?.label} data-target={graph.nodes.get(e.target)?.label} data-verdict={v}>{v}</span> : <span class="muted">—</span>;
                  },
                },
              ]
            : []),
          { key: "conns", title: "Connections", numeric: true, value: (e) => e.conns, render: (e) => num(e.conns) },
          { key: "bytes", title: "Bytes", numeric: true, value: (e) => e.bytes, render: (e) => bytes(e.bytes) },
          { key: "flows", title: "", value: () => "", render: (e) => <a href={href(["flows"], { filter: e.filter, from, to })}>flows</a> },
        ]}
      />
    </details>
  );
}
