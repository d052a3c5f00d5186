import { useEffect, useState } from "preact/hooks";
import { api, q, TopEntry } from "../api";
import { DataTable, ErrorBox, Loading } from "../components";
import { FilterBox } from "../filterbox";
import { bytes, num } from "../format";
import { useApi } from "../hooks";
import { href, Route, setParams } from "../router";
import { TimeRange } from "../timerange";
import { useFlowCompletion } from "./flows";

const BY: [string, string][] = [
  ["pair", "source → destination"],
  ["dst.service", "destination service"],
  ["dst.port", "destination port"],
  ["dst.namespace", "destination namespace"],
  ["src.namespace", "source namespace"],
  ["dst.workload", "destination workload"],
  ["src.workload", "source workload"],
  ["proto", "protocol"],
];

export function TopPage({ route }: { route: Route }) {
  const p = route.params;
  const by = p.get("by") ?? "pair";
  const filter = p.get("filter") ?? "";
  const from = p.get("from") ?? "15m";
  const to = p.get("to") ?? "";
  const [metric, setMetric] = useState<"conns" | "bytes" | "flows">("conns");
  const [text, setText] = useState(filter);
  useEffect(() => setText(filter), [filter]);
  const { schema, values, load } = useFlowCompletion();
  const top = useApi(() => api<{ entries: TopEntry[] }>("/api/v1/flows/top" + q({ by, filter, from, to, n: 50 })), [by, filter, from, to]);
  const go = (x: Record<string, string>) => setParams({ by, filter, from, to, ...x });
  const rows = top.data?.entries ?? [];
  const max = Math.max(1, ...rows.map((r) => r[metric]));
  const filterFor = (key: string) => (by === "pair" ? "" : `${by} = ${JSON.stringify(key)}`);
  return (
    <>
      <div class="page-head">
        <h1>Top talkers</h1>
        <p class="muted">The largest groups of flows in a time range.</p>
      </div>
      <div class="toolbar">
        <label>
          group by{" "}
          <select value={by} onChange={(e) => go({ by: e.currentTarget.value })}>
            {BY.map(([k, t]) => (
              <option value={k}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          rank by{" "}
          <select value={metric} onChange={(e) => setMetric(e.currentTarget.value as typeof metric)}>
            <option value="conns">connections</option>
            <option value="bytes">bytes</option>
            <option value="flows">flows</option>
          </select>
        </label>
        <TimeRange from={from} to={to} onChange={(f, t) => go({ from: f, to: t })} />
      </div>
      <FilterBox label="flow filter" value={text} onChange={setText} onSubmit={(v) => go({ filter: v.trim() })} schema={schema} values={values} onFocus={load} error={top.error?.position ? top.error : undefined} />
      {top.error && !top.error.position && <ErrorBox error={top.error} />}
      {top.loading && !top.data && <Loading what="top talkers" />}
      {top.data && (
        <DataTable
          testid="top-table"
          caption="top talkers"
          rows={[...rows].sort((a, b) => b[metric] - a[metric])}
          csv="palisade-top.csv"
          cols={[
            {
              key: "key",
              title: BY.find(([k]) => k === by)?.[1] ?? by,
              value: (r: TopEntry) => r.key,
              render: (r) => {
                const f = filterFor(r.key);
                const combined = f && filter ? `(${filter}) and ${f}` : f || filter;
                return <a href={href(["flows"], { filter: combined, from, to })}>{r.key || "(none)"}</a>;
              },
            },
            {
              key: "bar",
              title: "",
              value: (r) => r[metric],
              render: (r) => (
                <div class="bar" aria-hidden="true">
                  <span style={{ width: `${(100 * r[metric]) / max}%` }} />
                </div>
              ),
              width: "30%",
            },
            { key: "conns", title: "Connections", numeric: true, value: (r) => r.conns, render: (r) => num(r.conns) },
            { key: "flows", title: "Flows", numeric: true, value: (r) => r.flows, render: (r) => num(r.flows) },
            { key: "bytes", title: "Bytes", numeric: true, value: (r) => r.bytes, render: (r) => bytes(r.bytes) },
          ]}
          empty="No flow in this range."
        />
      )}
    </>
  );
}
