import { useEffect, useMemo, useState } from "preact/hooks";
import { api, ApiError, Flow, q } from "../api";
import { Column, DataTable, ErrorBox, Loading } from "../components";
import { FilterBox } from "../filterbox";
import { bytes, endpoint, num, time } from "../format";
import { buckets, Histogram } from "../histogram";
import { href, Route, setParams } from "../router";
import { resolve, TimeRange } from "../timerange";
import { useCompletion } from "./inventory";

export const LIMIT = 5000;

export const flowCols: Column<Flow>[] = [
  {
    key: "start",
    title: "Start",
    value: (f) => f.start,
    render: (f) => (
      <a href={href(["flow", f.id])} class="mono small">
        {time(f.start)}
      </a>
    ),
    width: "11em",
  },
  { key: "proto", title: "Proto", value: (f) => f.proto, width: "4em" },
  { key: "src", title: "Source", value: (f) => endpoint(f.src, f.mode === "detailed"), render: (f) => <Ep e={f.src} port={f.mode === "detailed"} /> },
  { key: "dst", title: "Destination", value: (f) => endpoint(f.dst), render: (f) => <Ep e={f.dst} port /> },
  { key: "service", title: "Service", value: (f) => f.dst.service ?? "" },
  { key: "conns", title: "Conns", numeric: true, value: (f) => f.conns, render: (f) => num(f.conns) },
  { key: "bytes", title: "Bytes", numeric: true, value: (f) => f.fwdBytes + f.revBytes, render: (f) => bytes(f.fwdBytes + f.revBytes) },
  { key: "points", title: "Seen at", numeric: true, value: (f) => f.points?.length ?? 0 },
  {
    key: "outcome",
    title: "Outcome",
    value: (f) => (f.tunnel ? "tunnel" : f.replied ? "replied" : "no reply"),
    render: (f) => (f.tunnel ? <span class="badge">{f.tunnel}</span> : f.replied ? <span class="badge ok">replied</span> : <span class="badge warn">no reply</span>),
  },
  {
    key: "id",
    title: "",
    value: (f) => f.id,
    render: (f) => (
      <a href={href(["flow", f.id])} aria-label={`flow ${f.id}`} data-testid="flow-link">
        details
      </a>
    ),
    width: "5em",
  },
];

export function Ep({ e, port }: { e: Flow["src"]; port?: boolean }) {
  const label = endpoint(e, port);
  return e.workload ? (
    <a href={href(["workload", ...e.workload.split("/")])} title={e.ip}>
      {label}
    </a>
  ) : (
    <span class="mono" title={e.kind ?? "unknown address"}>
      {label}
    </span>
  );
}

// flowValues completes flow fields from the inventory sample: src./dst.
// fields take the inventory's values of the same name.
export function useFlowCompletion() {
  const { values, schemas, load } = useCompletion();
  const fv = useMemo(
    () => (field: string) => {
      if (field === "__fields__") return values("__fields__").flatMap((f) => ["src." + f, "dst." + f]);
      if (field === "proto") return ["tcp", "udp", "icmp"];
      if (field === "mode") return ["conversation", "detailed"];
      const side = field.replace(/^(src|dst)\./, "");
      if (side === field) return [];
      if (side === "workload") return values("id");
      return values(side);
    },
    [values],
  );
  return { schema: schemas?.flows, values: fv, load };
}

export function FlowsPage({ route }: { route: Route }) {
  const filter = route.params.get("filter") ?? "";
  const from = route.params.get("from") ?? "15m";
  const to = route.params.get("to") ?? "";
  const [text, setText] = useState(filter);
  useEffect(() => setText(filter), [filter]);
  const [res, setRes] = useState<{ flows?: Flow[]; error?: ApiError; loading: boolean; at: number }>({ loading: true, at: Date.now() });
  const { schema, values, load } = useFlowCompletion();
  useEffect(() => {
    let live = true;
    setRes((r) => ({ ...r, loading: true }));
    const at = Date.now();
    api<{ flows: Flow[] }>("/api/v1/flows" + q({ filter, from, to, limit: LIMIT })).then(
      (r) => live && setRes({ flows: r.flows ?? [], loading: false, at }),
      (e) => live && setRes({ error: e, loading: false, at }),
    );
    return () => {
      live = false;
    };
  }, [filter, from, to]);
  const go = (p: Record<string, string>) => setParams({ filter, from, to, ...p });
  const fromMs = resolve(from, res.at - 3600e3, res.at);
  const toMs = resolve(to, res.at, res.at);
  const hist = useMemo(() => {
    const fl = res.flows ?? [];
    const a = buckets(fl, (f) => Date.parse(f.start), fromMs, toMs, 60);
    const c = buckets(fl, (f) => Date.parse(f.start), fromMs, toMs, 60, (f) => f.conns);
    return {
      times: a.times,
      series: [
        { label: "flows", values: a.values, color: "--accent" },
        { label: "connections", values: c.values, color: "--accent2" },
      ],
    };
  }, [res.flows, fromMs, toMs]);
  const filterError = res.error?.status === 400 && res.error.position ? res.error : undefined;
  return (
    <>
      <div class="page-head">
        <h1>Flows</h1>
        <p class="muted">Connections observed by the node agents, enriched with the workloads that held each address at the time.</p>
      </div>
      <div class="toolbar">
        <TimeRange from={from} to={to} onChange={(f, t) => go({ from: f, to: t })} />
        <a class="button secondary" href={href(["top"], { filter, from, to })}>
          Top talkers
        </a>
        <a class="button secondary" href={href(["map"], { filter, from, to })}>
          Service map
        </a>
      </div>
      <FilterBox
        label="flow filter"
        value={text}
        onChange={setText}
        onSubmit={(v) => go({ filter: v.trim() })}
        schema={schema}
        values={values}
        onFocus={load}
        error={filterError}
        placeholder="e.g. dst.namespace = sock-shop and dst.port = 80"
      />
      {res.error && !filterError && <ErrorBox error={res.error} />}
      {res.loading && !res.flows && <Loading what="flows" />}
      {res.flows && (
        <>
          <section class="card">
            <header>
              <h2>Over time</h2>
              <span class="muted small">
                {res.flows.length >= LIMIT ? `the first ${num(LIMIT)} flows; narrow the filter or the range for all` : `${num(res.flows.length)} flows`} · drag to zoom
              </span>
            </header>
            <Histogram
              label="flows and connections over time"
              times={hist.times}
              series={hist.series}
              onSelect={(a, b) => go({ from: new Date(a * 1000).toISOString(), to: new Date(b * 1000).toISOString() })}
            />
          </section>
          <DataTable testid="flows-table" caption="flows" cols={flowCols} rows={res.flows} csv="palisade-flows.csv" initialSort={["start", -1]} empty="No flow in this range matches." />
        </>
      )}
    </>
  );
}
