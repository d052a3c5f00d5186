// Policy discovery in a scope's page: start a run over a range of stored
// flows (POST /api/v1/scopes/{name}/discover), follow its progress
// (GET /api/v1/discovery/{id}), then read the discovered rules with their
// evidence (flows, connections, bytes, first and last seen, sample flows)
// and save them as the scope's next version.
import { useState } from "preact/hooks";
import { api, ApiError, Intent, ScopeView } from "../api";
import { Card, DataTable, ErrorBox, KV } from "../components";
import { ago, bytes, num, time } from "../format";
import { usePoll } from "../hooks";
import { href, setParams } from "../router";

export interface DiscoveredRule extends Intent {
  consumerCluster?: string;
  providerCluster?: string;
  kind: string;
  flows: number;
  conns: number;
  bytes: number;
  firstSeen: string;
  lastSeen: string;
  samples: string[] | null;
}
export interface DiscoveryJob {
  id: string;
  scope: string;
  state: "running" | "done" | "failed";
  percent: number;
  error?: string;
  result?: {
    from: string;
    to: string;
    clusters: { name: string; filter: string; by: string; members: string[] }[] | null;
    rules: DiscoveredRule[] | null;
    stats: { read: number; used: number; outOfScope: number; notReplied: number; translated: number; excluded: number; ephemeral: number; coveredByParent: number };
    catchAll: string;
    diff?: { version: string; new: string[]; notSeen: string[] };
  };
  yaml?: string;
  version?: string;
  started: string;
  ended?: string;
}

const RANGES: [string, string][] = [
  ["15m", "last 15 min"],
  ["1h", "last hour"],
  ["6h", "last 6 h"],
  ["24h", "last 24 h"],
  ["168h", "last 7 days"],
];

// nextVersion is the name the scope's next version gets (numbers of
// deleted drafts are not reused).
const nextVersion = (s: ScopeView) => "v" + (Math.max(s.lastVersion ?? 0, ...s.versions.map((v) => Number(v.version.replace(/\D/g, "")) || 0)) + 1);

export function Discovery({ s, job: jobID, reload }: { s: ScopeView; job: string; reload: () => void }) {
  const [since, setSince] = useState("1h");
  const [exclude, setExclude] = useState("");
  const [err, setErr] = useState<ApiError>();
  const [msg, setMsg] = useState<string>();
  const [saving, setSaving] = useState(false);
  // Follow the job named in the URL until it ends (every 500 ms).
  const followed = usePoll(jobID ? () => api<DiscoveryJob>("/api/v1/discovery/" + encodeURIComponent(jobID)) : null, (j) => j.state === "running", 500, [jobID]);
  // Until the first poll answers, the POST's own answer (running, 0%).
  const [started, setStarted] = useState<DiscoveryJob>();
  const job = followed.data?.id === jobID ? followed.data : started?.id === jobID ? started : undefined;
  const start = async (e: Event) => {
    e.preventDefault();
    setErr(undefined);
    setMsg(undefined);
    try {
      const j = await api<DiscoveryJob>(`/api/v1/scopes/${encodeURIComponent(s.name)}/discover`, { method: "POST", body: JSON.stringify({ since, exclude: exclude.trim() || undefined }) });
      setStarted(j);
      setParams({ scope: s.name, tab: "discovery", job: j.id });
    } catch (e) {
      setErr(e as ApiError);
    }
  };
  const save = async () => {
    const rules = job?.result?.rules ?? [];
    const name = nextVersion(s);
    setSaving(true);
    setErr(undefined);
    try {
      const policies = rules.map((r) => ({ name: r.name, consumer: r.consumer, provider: r.provider, action: r.action, ports: r.ports, class: r.class, priority: r.priority, direction: r.direction }));
      await api(`/api/v1/scopes/${encodeURIComponent(s.name)}/versions`, { method: "POST", body: JSON.stringify({ version: name, policies }) });
      setMsg(`Saved as ${s.name} ${name} (draft, ${num(rules.length)} intents): analyze it before enforcing.`);
      reload();
    } catch (e) {
      setErr(e as ApiError);
    } finally {
      setSaving(false);
    }
  };
  const res = job?.result;
  return (
    <>
      <Card title="Discover this scope's policy from its traffic">
        <p class="muted small">
          The minimal allow-list the observed traffic needs: one intent per edge between clusters of workloads, each explained by the flows behind it. Nothing changes until you save it as a version.
        </p>
        <form class="toolbar" onSubmit={start} data-testid="discover-form">
          <label>
            range{" "}
            <select value={since} onChange={(e) => setSince(e.currentTarget.value)} data-testid="discover-since">
              {RANGES.map(([k, t]) => (
                <option value={k}>{t}</option>
              ))}
            </select>
          </label>
          <label>
            leave out flows matching{" "}
            <input class="mono" size={36} value={exclude} onInput={(e) => setExclude(e.currentTarget.value)} placeholder="e.g. dst.port = 53" data-testid="discover-exclude" />
          </label>
          <button type="submit" disabled={job?.state === "running"} data-testid="discover-start">
            Discover
          </button>
        </form>
        <ErrorBox error={err ?? followed.error} />
        {msg && (
          <p role="status" data-testid="discover-saved">
            {msg}
          </p>
        )}
        {job && job.state === "running" && (
          <div role="status" aria-live="polite" data-testid="discover-progress" data-percent={job.percent}>
            <progress max={100} value={job.percent} aria-label="discovery progress" /> Reading flows… {job.percent}%
          </div>
        )}
        {job?.state === "failed" && (
          <div class="error" role="alert">
            Discovery failed: {job.error}
          </div>
        )}
      </Card>
      {job?.state === "done" && res && (
        <>
          <Card
            title={`Discovered: ${num(res.rules?.length ?? 0)} intents`}
            actions={
              <button onClick={save} disabled={saving || !(res.rules?.length ?? 0)} data-testid="discover-save">
                Save as {nextVersion(s)}
              </button>
            }
          >
            <KV
              rows={[
                ["Range", `${time(res.from)} – ${time(res.to)}`],
                ["Flows", `${num(res.stats.used)} used of ${num(res.stats.read)} read`],
                [
                  "Left out",
                  `${num(res.stats.notReplied)} not answered, ${num(res.stats.translated)} NAT/tunnel copies, ${num(res.stats.excluded)} excluded, ${num(res.stats.outOfScope)} outside the scope, ${num(res.stats.ephemeral)} to ephemeral ports, ${num(res.stats.coveredByParent)} allowed by a parent`,
                ],
                ["Clusters", `${num(res.clusters?.length ?? 0)} groups of workloads`],
                ["Catch-all", res.catchAll || "DENY"],
                [
                  "Against " + (res.diff?.version ?? "the newest version"),
                  res.diff ? `${num(res.diff.new.length)} new edges, ${num(res.diff.notSeen.length)} allowed edges not seen` : "no version yet",
                ],
                ["Took", job.ended ? `${num((Date.parse(job.ended) - Date.parse(job.started)) / 1000)} s` : ""],
              ]}
            />
            {res.diff && (res.diff.new.length > 0 || res.diff.notSeen.length > 0) && (
              <details>
                <summary>Difference with {res.diff.version}</summary>
                <pre class="diff small" data-testid="discover-diff">
                  {res.diff.new.map((l) => (
                    <div class="add">+ {l}</div>
                  ))}
                  {res.diff.notSeen.map((l) => (
                    <div class="del">- {l} (allowed, not seen)</div>
                  ))}
                </pre>
              </details>
            )}
          </Card>
          <DataTable
            testid="discover-rules"
            caption="discovered intents with their evidence"
            rows={res.rules ?? []}
            initialSort={["conns", -1]}
            empty="No flow of this range needs an intent."
            cols={[
              { key: "consumer", title: "Consumer", value: (r: DiscoveredRule) => r.consumerCluster || r.consumer, render: (r) => <span title={r.consumer}><code class="small">{r.consumerCluster || r.consumer}</code></span> },
              { key: "provider", title: "Provider", value: (r) => r.providerCluster || r.provider, render: (r) => <span title={r.provider}><code class="small">{r.providerCluster || r.provider}</code></span> },
              { key: "ports", title: "Ports", value: (r) => (r.ports ?? ["any"]).join(", ") },
              { key: "kind", title: "Kind", value: (r) => r.kind },
              { key: "flows", title: "Flows", numeric: true, value: (r) => r.flows, render: (r) => num(r.flows) },
              { key: "conns", title: "Conns", numeric: true, value: (r) => r.conns, render: (r) => num(r.conns) },
              { key: "bytes", title: "Bytes", numeric: true, value: (r) => r.bytes, render: (r) => bytes(r.bytes) },
              { key: "first", title: "First seen", value: (r) => r.firstSeen, render: (r) => <span title={time(r.firstSeen)}>{ago(r.firstSeen)}</span> },
              { key: "last", title: "Last seen", value: (r) => r.lastSeen, render: (r) => <span title={time(r.lastSeen)}>{ago(r.lastSeen)}</span> },
              {
                key: "samples",
                title: "Sample flows",
                value: (r) => (r.samples ?? []).join(" "),
                render: (r) => (
                  <span data-testid="discover-samples">
                    {(r.samples ?? []).map((id, i) => (
                      <>
                        {i ? " " : ""}
                        <a href={href(["flow", id])}>{i + 1}</a>
                      </>
                    ))}
                  </span>
                ),
              },
            ]}
          />
          {job.yaml && (
            <details class="card">
              <summary>As YAML (for palisade apply)</summary>
              <pre class="small" data-testid="discover-yaml">
                {job.yaml}
              </pre>
            </details>
          )}
        </>
      )}
    </>
  );
}
