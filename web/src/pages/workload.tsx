import { api, Finding, Flow, Intent, q, Workload, WorkloadEvent, cves } from "../api";
import { Card, DataTable, ErrorBox, KV, Loading, Severity, Tags } from "../components";
import { ago, time } from "../format";
import { useApi } from "../hooks";
import { href } from "../router";
import { flowCols } from "./flows";

const quote = (s: string) => JSON.stringify(s);

// GET /api/v1/workload-policies: the intents of the workload's scopes
// that select it.
interface Applied {
  rule: string;
  scope: string;
  version: string;
  index: number;
  enforced: boolean;
  side: "consumer" | "provider" | "both";
  via?: string;
  policy: Intent;
}

export function WorkloadPage({ id }: { id: string }) {
  const wl = useApi(() => api<{ workload: Workload; history: WorkloadEvent[]; scopes?: string[] }>("/api/v1/inventory/" + id.split("/").map(encodeURIComponent).join("/")), [id]);
  const findings = useApi(() => api<{ items: Finding[] }>("/api/v1/vulnerabilities" + q({ filter: `workload contains ${quote(id)}` })), [id]);
  const flows = useApi(
    () => api<{ flows: Flow[] }>("/api/v1/flows" + q({ filter: `src.workload = ${quote(id)} or dst.workload = ${quote(id)}`, from: "1h", limit: 200 })),
    [id],
  );
  const applied = useApi(() => api<{ scopes: string[]; versions: Record<string, string>; policies: Applied[] }>("/api/v1/workload-policies" + q({ id })), [id]);
  if (wl.error) return <ErrorBox error={wl.error} />;
  if (!wl.data) return <Loading what="the workload" />;
  const w = wl.data.workload;
  const byImage = new Map<string, Finding[]>();
  for (const f of findings.data?.items ?? []) {
    const k = f.image ?? "";
    byImage.set(k, [...(byImage.get(k) ?? []), f]);
  }
  return (
    <>
      <div class="page-head">
        <p class="crumbs">
          <a href="#/inventory">Inventory</a> › {w.kind}
        </p>
        <h1>
          {w.namespace ? <span class="muted">{w.namespace}/</span> : null}
          {w.name}
          {w.deleted && <span class="badge bad">deleted {ago(w.deleted)}</span>}
        </h1>
      </div>
      <div class="grid2">
        <Card title="Workload">
          <KV
            rows={[
              ["ID", <span class="mono">{w.id}</span>],
              ["Kind", w.kind],
              ["Cluster", w.cluster],
              ["Namespace", w.namespace ? <a href={href(["inventory"], { filter: `namespace = ${quote(w.namespace)}` })}>{w.namespace}</a> : ""],
              ["Owner", w.owner ? <a href={href(["inventory"], { filter: `owner.kind = ${quote(w.owner.kind)} and owner.name = ${quote(w.owner.name)}` })}>{`${w.owner.kind}/${w.owner.name}`}</a> : ""],
              ["Node", w.node ? <a href={href(["inventory"], { filter: `kind = node and name = ${quote(w.node)}` })}>{w.node}</a> : ""],
              ["Host IP", w.hostIP],
              ["Phase", w.phase],
              ["IPs", (w.ips ?? []).join(", ")],
              ["CIDRs", (w.cidrs ?? []).join(", ")],
              ["Service account", w.serviceAccount],
              ["Service type", w.serviceType],
              ["Cluster IP", w.clusterIP],
              ["UID", w.uid ? <span class="mono small">{w.uid}</span> : ""],
              ["Created", `${time(w.created)} (${ago(w.created)})`],
              ["Updated", time(w.updated)],
              ["Deleted", w.deleted ? time(w.deleted) : ""],
            ]}
          />
        </Card>
        <div class="stack">
          <Card title="Labels">
            <Tags tags={w.labels} />
          </Card>
          <Card title="Annotations">
            <Tags tags={w.annotations} />
          </Card>
          <Card title="Scopes">
            {wl.data.scopes?.length ? (
              <span data-testid="workload-scopes">
                {wl.data.scopes.map((sc, i) => (
                  <>
                    {i ? " › " : ""}
                    <a href={href(["policies"], { scope: sc })}>{sc}</a>
                  </>
                ))}
              </span>
            ) : (
              <span class="muted">in no scope</span>
            )}
          </Card>
          {w.attrs && Object.keys(w.attrs).length > 0 && (
            <Card title="Attributes">
              <Tags tags={Object.fromEntries(Object.entries(w.attrs).map(([k, v]) => [k, v.join(", ")]))} />
            </Card>
          )}
        </div>
      </div>
      {(w.containers?.length ?? 0) > 0 && (
        <Card title="Containers and their images">
          <table>
            <thead>
              <tr>
                <th scope="col">Container</th>
                <th scope="col">Image</th>
                <th scope="col">Vulnerabilities</th>
              </tr>
            </thead>
            <tbody>
              {w.containers!.map((c) => {
                const fs = [...byImage.entries()].filter(([img]) => img === c.image || img.startsWith(c.image.split("@")[0])).flatMap(([, f]) => f);
                return (
                  <tr>
                    <td>{c.name}</td>
                    <td class="mono small">
                      {c.image}
                      {c.imageDigest && <div class="muted">{c.imageDigest}</div>}
                    </td>
                    <td>
                      {fs.length === 0 ? (
                        <span class="muted">{findings.loading ? "…" : "none found (or not scanned)"}</span>
                      ) : (
                        <ul class="plain">
                          {fs.map((f) => (
                            <li>
                              <Severity s={f.severity} /> <span class="mono">{cves(f)[0] ?? f.id}</span> {f.package} {f.installed}
                              {f.fixed ? <span class="muted"> → {f.fixed}</span> : null}
                            </li>
                          ))}
                        </ul>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </Card>
      )}
      {(w.ports?.length ?? 0) > 0 && (
        <Card title="Service">
          <KV
            rows={[
              ["Ports", w.ports!.map((p) => `${p.port}/${p.protocol}${p.targetPort ? " → " + p.targetPort : ""}${p.nodePort ? " (node port " + p.nodePort + ")" : ""}`).join(", ")],
              ["Selector", <Tags tags={w.selector} />],
              ["Endpoints", (w.endpoints ?? []).map((e) => `${e.ip}${e.pod ? " (" + e.pod + ")" : ""}${e.ready ? "" : " not ready"}`).join(", ")],
            ]}
          />
        </Card>
      )}
      <Card title="Policies that apply to it">
        <ErrorBox error={applied.error} />
        {applied.loading && !applied.data && <Loading what="its policies" />}
        {applied.data && (
          <>
            <p class="muted small">
              The intents of its scopes ({Object.entries(applied.data.versions).map(([s, v], i) => (
                <>
                  {i ? ", " : ""}
                  <a href={href(["policies"], { scope: s, tab: "intents", version: v })}>
                    {s} {v}
                  </a>
                </>
              ))}
              {Object.keys(applied.data.versions).length ? "" : "none with a version"}: the enforced version, else the newest) whose consumer or provider selects it. What no intent allows, the scope's catch-all decides.
            </p>
            <DataTable
              testid="workload-policies"
              caption="policies that apply to the workload"
              rows={applied.data.policies}
              pageSize={20}
              empty="No intent of its scopes names it: only the catch-all decides its flows."
              cols={[
                { key: "rule", title: "Rule", value: (a: Applied) => a.rule, render: (a) => <a class="mono small" href={href(["policies"], { scope: a.scope, tab: "intents", version: a.version })}>{a.rule}</a> },
                { key: "side", title: "As", value: (a) => a.side, render: (a) => <span data-testid="applied-side" data-rule={a.rule} data-side={a.side}>{a.side}{a.via ? <span class="muted small"> via {a.via}</span> : null}</span> },
                { key: "action", title: "Action", value: (a) => a.policy.action, render: (a) => <span class={"badge " + (a.policy.action === "ALLOW" ? "ok" : "bad")}>{a.policy.action}</span> },
                { key: "consumer", title: "Consumer", value: (a) => a.policy.consumer, render: (a) => <code class="small">{a.policy.consumer}</code> },
                { key: "provider", title: "Provider", value: (a) => a.policy.provider, render: (a) => <code class="small">{a.policy.provider}</code> },
                { key: "ports", title: "Ports", value: (a) => (a.policy.ports ?? ["any"]).join(", ") },
                { key: "state", title: "Version", value: (a) => (a.enforced ? "enforced" : "newest"), render: (a) => <span class={"badge " + (a.enforced ? "ok" : "")}>{a.enforced ? "enforced" : "newest, not enforced"}</span> },
              ]}
            />
          </>
        )}
      </Card>
      <Card title="Recent flows (last hour)">
        {flows.error && <ErrorBox error={flows.error} />}
        {flows.data && <DataTable cols={flowCols} rows={flows.data.flows} pageSize={10} initialSort={["start", -1]} empty="No flow to or from this workload in the last hour." />}
      </Card>
      <Card title="History (IPs, labels and every other change over time)">
        <DataTable
          cols={[
            { key: "time", title: "Time", value: (e: WorkloadEvent) => e.time, render: (e) => time(e.time) },
            { key: "type", title: "Event", value: (e) => e.type },
            { key: "changes", title: "Changes", value: (e) => (e.changes ?? []).join("; "), render: (e) => <span class="small mono">{(e.changes ?? []).join("; ")}</span> },
          ]}
          rows={wl.data.history ?? []}
          pageSize={10}
          initialSort={["time", -1]}
        />
      </Card>
    </>
  );
}
