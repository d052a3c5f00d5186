// The service map: workloads as nodes, observed calls as edges (with their
// ports and volumes), for a namespace, a flow filter and a time range. The
// graph library (Cytoscape.js with the fCoSE layout) is loaded only when the
// page is opened.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, Flow, q, Workload } from "../api";
import { DataTable, ErrorBox, Loading } from "../components";
import { FilterBox } from "../filterbox";
import { bytes, num } from "../format";
import { href, Route, setParams } from "../router";
import { TimeRange } from "../timerange";
import { useApi } from "../hooks";
import { LIMIT, useFlowCompletion } from "./flows";
import type { Graph, MapNode, MapEdge } from "./mapgraph";
import { buildGraph } from "./mapgraph";

type Selected = { node?: MapNode; edge?: MapEdge };

export function MapPage({ route }: { route: Route }) {
  const p = route.params;
  const ns = p.get("ns") ?? "";
  const filter = p.get("filter") ?? "";
  const from = p.get("from") ?? "15m";
  const to = p.get("to") ?? "";
  const fine = p.get("layout") === "fine";
  const [text, setText] = useState(filter);
  useEffect(() => setText(filter), [filter]);
  const fc = useFlowCompletion();
  const nsList = useApi(() => api<{ items: Workload[] }>("/api/v1/inventory" + q({ filter: "kind = namespace" })), []);
  const [res, setRes] = useState<{ flows?: Flow[]; error?: ApiError; loading: boolean }>({ loading: true });
  const go = (x: Record<string, string>) => setParams({ ns, filter, from, to, layout: fine ? "fine" : undefined, ...x });
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
      {res.loading && !graph && <Loading what="flows for the map" />}
      {graph && (
        <>
          <div class="map-wrap">
            <GraphView graph={graph} onSelect={setSel} fine={fine} />
            <aside class="card map-side" aria-live="polite">
              <Side graph={graph} sel={sel} from={from} to={to} truncated={(res.flows?.length ?? 0) >= LIMIT} />
            </aside>
          </div>
          <EdgeTable graph={graph} from={from} to={to} />
        </>
      )}
    </>
  );
}

function Side({ graph, sel, from, to, truncated }: { graph: Graph; sel: Selected; from: string; to: string; truncated: boolean }) {
  if (sel.edge) {
    const e = sel.edge;
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
    </>
  );
}

function GraphView({ graph, onSelect, fine }: { graph: Graph; onSelect: (s: Selected) => void; fine: boolean }) {
  const el = useRef<HTMLDivElement>(null);
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
    })().catch((e) => setErr(String(e)));
    return () => {
      dead = true;
      cyRef.current?.destroy();
      cyRef.current = null;
    };
  }, [graph, fine]);
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
function EdgeTable({ graph, from, to }: { graph: Graph; from: string; to: string }) {
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
          { key: "conns", title: "Connections", numeric: true, value: (e) => e.conns, render: (e) => num(e.conns) },
          { key: "bytes", title: "Bytes", numeric: true, value: (e) => e.bytes, render: (e) => bytes(e.bytes) },
          { key: "flows", title: "", value: () => "", render: (e) => <a href={href(["flows"], { filter: e.filter, from, to })}>flows</a> },
        ]}
      />
    </details>
  );
}
