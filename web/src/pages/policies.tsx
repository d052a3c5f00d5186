// Scopes and policies: the scope tree, each scope's versions, intents and
// diffs, the analysis of a version against stored flows (Permitted /
// Escaped / Rejected / Misdropped over time, per rule, with drill-down to
// the flows), and compliance alerts.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Alert, AnalysisReport, api, FlowVerdict, Intent, q, ruleString, ScopeView } from "../api";
import { Card, DataTable, ErrorBox, KV, Loading, Tabs } from "../components";
import { ago, num, time } from "../format";
import { Histogram } from "../histogram";
import { useApi } from "../hooks";
import { href, Route, setParams } from "../router";
import { Discovery } from "./discovery";
import { flowCols } from "./flows";

const VERDICTS: [keyof AnalysisReport["counts"], string, string][] = [
  ["permitted", "Permitted", "--ok"],
  ["escaped", "Escaped", "--bad"],
  ["rejected", "Rejected", "--warn"],
  ["misdropped", "Misdropped", "--accent2"],
];
const SINCE: [string, string][] = [
  ["15m", "last 15 min"],
  ["1h", "last hour"],
  ["6h", "last 6 h"],
  ["24h", "last 24 h"],
  ["168h", "last 7 days"],
];

type Tab = "intents" | "versions" | "analysis" | "discovery" | "alerts";

export function PoliciesPage({ route }: { route: Route }) {
  const p = route.params;
  const scope = p.get("scope") ?? "";
  const scopes = useApi(() => api<ScopeView[]>("/api/v1/scopes"), []);
  // Acknowledged alerts too (shown as such), so an acknowledgement shows.
  const alerts = useApi(() => api<Alert[]>("/api/v1/compliance/alerts?all=true"), []);
  const tree = useMemo(() => {
    const kids = new Map<string, ScopeView[]>();
    for (const s of scopes.data ?? []) kids.set(s.parent ?? "", [...(kids.get(s.parent ?? "") ?? []), s]);
    return kids;
  }, [scopes.data]);
  const sel = scopes.data?.find((s) => s.name === scope);
  const renderTree = (parent: string): any => {
    const list = tree.get(parent);
    if (!list?.length) return null;
    return (
      <ul class="tree">
        {list.map((s) => (
          <li>
            <a href={href(["policies"], { scope: s.name })} aria-current={s.name === scope ? "page" : undefined}>
              {s.name}
            </a>
            {s.enforced ? <span class="badge ok">{s.enforced} enforced</span> : <span class="badge">analyze</span>}
            {renderTree(s.name)}
          </li>
        ))}
      </ul>
    );
  };
  return (
    <>
      <div class="page-head">
        <h1>Scopes and policies</h1>
        <p class="muted">Scopes group workloads by filter; each scope's versions hold its intents. Analyze a version against observed flows before enforcing it.</p>
      </div>
      <ErrorBox error={scopes.error} />
      <div class="split">
        <Card title="Scopes">
          {scopes.loading && !scopes.data && <Loading what="scopes" />}
          {scopes.data && (scopes.data.length ? renderTree("") : <p class="muted">No scope yet. Create them with <code>palisade apply -f scopes.yaml</code> (docs/POLICY.md).</p>)}
        </Card>
        <div>
          {sel ? (
            <ScopePage s={sel} route={route} alerts={(alerts.data ?? []).filter((a) => a.scope === sel.name)} reload={() => (scopes.reload(), alerts.reload())} />
          ) : (
            <AlertsCard alerts={alerts.data ?? []} reload={alerts.reload} error={alerts.error} />
          )}
        </div>
      </div>
    </>
  );
}

function AlertsCard({ alerts, reload, error }: { alerts: Alert[]; reload: () => void; error?: any }) {
  const [msg, setMsg] = useState<string>();
  return (
    <Card title={`Compliance alerts (${alerts.filter((a) => !a.acked).length} open)`}>
      <ErrorBox error={error} />
      {msg && <p role="status">{msg}</p>}
      <DataTable
        testid="alerts-table"
        caption="compliance alerts"
        rows={alerts}
        initialSort={["last", -1]}
        empty="No alert: every enforced version matches what the network does."
        cols={[
          { key: "verdict", title: "Verdict", value: (a: Alert) => a.verdict, render: (a) => <span class={"verdict v-" + a.verdict}>{a.verdict}</span> },
          { key: "scope", title: "Scope", value: (a) => `${a.scope}@${a.version}` },
          { key: "edge", title: "Edge", value: (a) => a.edge, render: (a) => <span class="small">{a.edge}</span> },
          { key: "rule", title: "Rule", value: (a) => ruleString(a.rule), render: (a) => <span class="mono small">{ruleString(a.rule)}</span> },
          { key: "count", title: "Flows", numeric: true, value: (a) => a.count, render: (a) => num(a.count) },
          { key: "last", title: "Last", value: (a) => a.last, render: (a) => <span title={time(a.last)}>{ago(a.last)}</span> },
          { key: "flow", title: "", value: () => "", render: (a) => (a.sampleFlow ? <a href={href(["flow", a.sampleFlow])}>sample flow</a> : "") },
          {
            key: "ack",
            title: "",
            value: (a) => (a.acked ? 1 : 0),
            render: (a) =>
              a.acked ? (
                <span class="muted small" data-testid="acked" data-alert={a.id}>
                  acked by {a.ackedBy}
                </span>
              ) : (
                <button
                  class="secondary"
                  data-testid="ack"
                  data-alert={a.id}
                  onClick={async () => {
                    try {
                      await api(`/api/v1/compliance/alerts/${encodeURIComponent(a.id)}/ack`, { method: "POST", body: "{}" });
                      reload();
                    } catch (e) {
                      setMsg((e as Error).message);
                    }
                  }}
                >
                  Acknowledge
                </button>
              ),
          },
        ]}
      />
    </Card>
  );
}

function ScopePage({ s, route, alerts, reload }: { s: ScopeView; route: Route; alerts: Alert[]; reload: () => void }) {
  const p = route.params;
  const tab = (p.get("tab") as Tab) || "analysis";
  const latest = s.versions[s.versions.length - 1]?.version ?? "";
  const version = p.get("version") || latest;
  const go = (x: Record<string, string | undefined>) => setParams({ scope: s.name, tab, version, since: p.get("since") ?? undefined, ...x });
  return (
    <>
      <Card title={<>Scope {s.name}</>}>
        <KV
          rows={[
            ["Filter", <code>{s.filter}</code>],
            ["Parent", s.parent ? <a href={href(["policies"], { scope: s.parent })}>{s.parent}</a> : "(top)"],
            ["Catch-all", s.catchAll || "DENY"],
            ["Enforced", s.enforced || "none: analysis only"],
            ["Members", <a href={href(["inventory"], { filter: s.filter })}>show in the inventory</a>],
            ["Description", s.description],
          ]}
        />
      </Card>
      <Tabs
        label="scope views"
        value={tab}
        onChange={(t) => go({ tab: t })}
        tabs={[
          ["analysis", "Analysis"],
          ["intents", "Intents"],
          ["versions", "Versions"],
          ["discovery", "Discovery"],
          ["alerts", `Alerts (${alerts.filter((a) => !a.acked).length})`],
        ]}
      />
      {s.versions.length > 0 && tab !== "alerts" && tab !== "versions" && tab !== "discovery" && (
        <div class="toolbar">
          <label>
            version{" "}
            <select value={version} onChange={(e) => go({ version: e.currentTarget.value })} data-testid="version-select">
              {s.versions.map((v) => (
                <option value={v.version}>
                  {v.version} ({v.state})
                </option>
              ))}
            </select>
          </label>
          {tab === "analysis" && (
            <label>
              range{" "}
              <select value={p.get("since") ?? "1h"} onChange={(e) => go({ since: e.currentTarget.value })}>
                {SINCE.map(([k, t]) => (
                  <option value={k}>{t}</option>
                ))}
              </select>
            </label>
          )}
        </div>
      )}
      {s.versions.length === 0 && tab !== "alerts" && tab !== "discovery" && <p class="muted">This scope has no version yet: apply a Policy document for it.</p>}
      {tab === "intents" && version && <Intents scope={s.name} version={version} />}
      {tab === "versions" && <Versions s={s} reload={reload} />}
      {tab === "analysis" && version && <Analysis scope={s.name} version={version} since={p.get("since") ?? "1h"} route={route} />}
      {tab === "discovery" && <Discovery s={s} job={p.get("job") ?? ""} reload={reload} />}
      {tab === "alerts" && <AlertsCard alerts={alerts} reload={reload} />}
    </>
  );
}

function Intents({ scope, version }: { scope: string; version: string }) {
  const pol = useApi(() => api<Intent[]>(`/api/v1/scopes/${encodeURIComponent(scope)}/policies` + q({ version })), [scope, version]);
  if (pol.error) return <ErrorBox error={pol.error} />;
  if (!pol.data) return <Loading what="intents" />;
  return (
    <DataTable
      testid="intents-table"
      caption="intents"
      rows={pol.data.map((x, i) => ({ ...x, i }))}
      cols={[
        { key: "i", title: "#", numeric: true, value: (x: Intent & { i: number }) => x.i },
        { key: "action", title: "Action", value: (x) => x.action, render: (x) => <span class={"badge " + (x.action === "ALLOW" ? "ok" : "bad")}>{x.action}</span> },
        { key: "consumer", title: "Consumer", value: (x) => x.consumer, render: (x) => <code class="small">{x.consumer}</code> },
        { key: "provider", title: "Provider", value: (x) => x.provider, render: (x) => <code class="small">{x.provider}</code> },
        { key: "ports", title: "Ports", value: (x) => (x.ports ?? ["any"]).join(", ") },
        { key: "class", title: "Class", value: (x) => x.class },
        { key: "priority", title: "Priority", numeric: true, value: (x) => x.priority ?? 100 },
        { key: "name", title: "Name", value: (x) => x.name ?? "" },
      ]}
      empty="No intent in this version: only the catch-all decides."
    />
  );
}

function Versions({ s, reload }: { s: ScopeView; reload: () => void }) {
  const vs = s.versions;
  const [a, setA] = useState(vs[vs.length - 2]?.version ?? vs[0]?.version ?? "");
  const [b, setB] = useState(vs[vs.length - 1]?.version ?? "");
  const [msg, setMsg] = useState<string>();
  const diff = useApi(
    () => (a && b && a !== b ? api<{ diff: string[] }>(`/api/v1/scopes/${encodeURIComponent(s.name)}/versions/${encodeURIComponent(a)}/diff` + q({ to: b })) : Promise.resolve({ diff: [] as string[] })),
    [s.name, a, b],
  );
  return (
    <>
      {msg && <p role="status">{msg}</p>}
      <DataTable
        caption="versions"
        rows={vs}
        initialSort={["version", -1]}
        cols={[
          { key: "version", title: "Version", value: (v) => Number(v.version.replace(/\D/g, "")), render: (v) => <strong>{v.version}</strong> },
          { key: "state", title: "State", value: (v) => v.state, render: (v) => <span class={"badge " + (s.enforced === v.version ? "ok" : "")}>{s.enforced === v.version ? "enforced" : v.state}</span> },
          { key: "policies", title: "Intents", numeric: true, value: (v) => v.policies },
          { key: "updated", title: "Changed", value: (v) => v.updated, render: (v) => `${time(v.updated)} by ${v.updatedBy}` },
          {
            key: "enforce",
            title: "",
            value: () => "",
            render: (v) =>
              s.enforced === v.version ? (
                ""
              ) : (
                <button
                  class="secondary"
                  onClick={async () => {
                    if (!confirm(`Enforce ${s.name} ${v.version}? Its flows are then checked live and its rules programmed on the nodes.`)) return;
                    try {
                      await api(`/api/v1/scopes/${encodeURIComponent(s.name)}/versions/${encodeURIComponent(v.version)}/enforce`, { method: "POST", body: "{}" });
                      setMsg(`${s.name} ${v.version} is enforced.`);
                      reload();
                    } catch (e) {
                      setMsg((e as Error).message);
                    }
                  }}
                >
                  Enforce
                </button>
              ),
          },
        ]}
      />
      {vs.length > 1 && (
        <Card title="Diff">
          <div class="toolbar">
            <label>
              from{" "}
              <select value={a} onChange={(e) => setA(e.currentTarget.value)}>
                {vs.map((v) => (
                  <option>{v.version}</option>
                ))}
              </select>
            </label>
            <label>
              to{" "}
              <select value={b} onChange={(e) => setB(e.currentTarget.value)}>
                {vs.map((v) => (
                  <option>{v.version}</option>
                ))}
              </select>
            </label>
          </div>
          <ErrorBox error={diff.error} />
          <pre class="diff" data-testid="version-diff">
            {(diff.data?.diff ?? []).map((l) => (
              <div class={l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : ""}>{l}</div>
            ))}
            {a === b ? "Choose two different versions." : diff.data && !diff.data.diff.length ? "No difference." : ""}
          </pre>
        </Card>
      )}
    </>
  );
}

function Analysis({ scope, version, since, route }: { scope: string; version: string; since: string; route: Route }) {
  const rep = useApi(() => api<AnalysisReport>("/api/v1/analysis" + q({ scope, version, since })), [scope, version, since]);
  const drillVerdict = route.params.get("verdict") ?? "";
  const drillRule = route.params.get("rule") ?? "";
  const drill = (verdict: string, rule?: string) => setParams({ scope, tab: "analysis", version, since, verdict, rule });
  const chart = useMemo(() => {
    const m = rep.data?.byMinute ?? [];
    return {
      times: m.map((x) => Date.parse(x.minute) / 1000),
      series: VERDICTS.map(([k, label, color]) => ({ label, color, values: m.map((x) => x[k]) })),
    };
  }, [rep.data]);
  if (rep.error) return <ErrorBox error={rep.error} />;
  if (!rep.data) return <Loading what={`the analysis of ${scope} ${version}`} />;
  const r = rep.data;
  return (
    <>
      <div class="sev-cards" data-testid="analysis-counts">
        {VERDICTS.map(([k, label]) => (
          <a class={"sev-card verdict-card v-" + k + (drillVerdict === k && !drillRule ? " on" : "")} href={href(["policies"], { scope, tab: "analysis", version, since, verdict: k })} data-verdict={k} data-count={r.counts[k]}>
            <span class="n">{num(r.counts[k])}</span>
            <span>{label}</span>
          </a>
        ))}
        <div class="sev-card info">
          <span class="n">{num(r.flows)}</span>
          <span>
            flows analyzed{r.translated ? `, ${num(r.translated)} translated copies` : ""}
            {r.truncated ? " (truncated)" : ""}
          </span>
        </div>
      </div>
      <Card title="Verdicts over time (per minute)">
        {r.byMinute.length ? <Histogram lines label="verdicts per minute" times={chart.times} series={chart.series} /> : <p class="muted">No flow of this range touches the scope.</p>}
      </Card>
      <Card title="By rule">
        <DataTable
          testid="analysis-rules"
          caption="verdicts by rule"
          rows={r.byRule}
          initialSort={["total", -1]}
          cols={[
            { key: "rule", title: "Rule", value: (x) => ruleString(x.rule), render: (x) => <span class="mono small">{ruleString(x.rule)}</span> },
            { key: "action", title: "Action", value: (x) => x.action },
            { key: "intent", title: "Intent", value: (x) => x.intent ?? "", render: (x) => <code class="small">{x.intent}</code> },
            ...VERDICTS.map(([k, label]) => ({
              key: k,
              title: label,
              numeric: true,
              value: (x: AnalysisReport["byRule"][number]) => x[k],
              render: (x: AnalysisReport["byRule"][number]) =>
                x[k] ? (
                  <a href={href(["policies"], { scope, tab: "analysis", version, since, verdict: k, rule: ruleString(x.rule) })} data-testid={"drill-" + k}>
                    {num(x[k])}
                  </a>
                ) : (
                  <span class="muted">0</span>
                ),
            })),
            { key: "total", title: "Total", numeric: true, value: (x) => x.permitted + x.escaped + x.rejected + x.misdropped },
          ]}
          empty="No rule decided a flow in this range."
        />
      </Card>
      {drillVerdict && <Drill scope={scope} version={version} since={since} verdict={drillVerdict} rule={drillRule} onClose={() => drill("", "")} />}
    </>
  );
}

function Drill({ scope, version, since, verdict, rule, onClose }: { scope: string; version: string; since: string; verdict: string; rule: string; onClose: () => void }) {
  const fl = useApi(() => api<FlowVerdict[]>("/api/v1/analysis/flows" + q({ scope, version, since, verdict, rule, limit: 200 })), [scope, version, since, verdict, rule]);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => box.current?.scrollIntoView({ block: "start" }), [verdict, rule]);
  return (
    <div ref={box}>
    <Card
      title={
        <>
          {verdict} flows{rule ? <> decided by <span class="mono">{rule}</span></> : null}
        </>
      }
      actions={
        <button class="ghost" onClick={onClose}>
          Close
        </button>
      }
    >
      <ErrorBox error={fl.error} />
      {fl.loading && !fl.data && <Loading what="flows" />}
      {fl.data && <DataTable testid="drill-flows" caption="flows of the selection" rows={fl.data.map((x) => x.flow)} cols={flowCols} pageSize={20} initialSort={["start", -1]} empty="No flow." />}
    </Card>
    </div>
  );
}
