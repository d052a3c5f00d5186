// Enforcement: per scope its mode (analyze or enforce, switchable), per
// node what the agent programmed against what the server wants, per pod
// the programmed version, errors and drift repairs.
import { useState } from "preact/hooks";
import { api, Enforcement, EnforcementAgent, ScopeView } from "../api";
import { Card, DataTable, ErrorBox, KV, Loading } from "../components";
import { ago, duration, num, time } from "../format";
import { useApi, useInterval } from "../hooks";
import { href } from "../router";

export function EnforcementPage() {
  const enf = useApi(() => api<Enforcement>("/api/v1/enforcement"), []);
  const scopes = useApi(() => api<ScopeView[]>("/api/v1/scopes"), []);
  const [msg, setMsg] = useState<string>();
  const [open, setOpen] = useState<string>();
  useInterval(enf.reload, 5000);
  const modes = new Map((enf.data?.scopes ?? []).map((m) => [m.scope, m]));
  const setMode = async (scope: string, mode: string, version?: string) => {
    if (mode === "enforce" && !confirm(`Enforce scope ${scope}${version ? " " + version : ""}? The agents program its rules on the nodes and pods.`)) return;
    try {
      await api(`/api/v1/enforcement/scopes/${encodeURIComponent(scope)}`, { method: "POST", body: JSON.stringify({ mode, version }) });
      setMsg(`${scope}: ${mode}.`);
      enf.reload();
      scopes.reload();
    } catch (e) {
      setMsg(`${scope}: ${(e as Error).message}`);
    }
  };
  const e = enf.data;
  const agent = e?.agents.find((a) => a.node === open);
  return (
    <>
      <div class="page-head">
        <h1>Enforcement</h1>
        <p class="muted">Scopes in enforce mode have their rules programmed by the node agents (iptables in node and pod namespaces); the others are only analyzed.</p>
      </div>
      <ErrorBox error={enf.error ?? scopes.error} />
      {msg && (
        <p role="status" class="note">
          {msg}
        </p>
      )}
      {enf.loading && !e && <Loading what="the enforcement state" />}
      {e && (
        <>
          <Card title="Compilation">
            <KV
              rows={[
                ["Compiled", e.compiled ? `${time(e.compiled)} (${ago(e.compiled)})` : "never"],
                ["Rules", num(e.rules)],
                ["Set members", num(e.members)],
                ["Error", e.error ? <span class="warn-text">{e.error}</span> : "none"],
              ]}
            />
          </Card>
          <Card title="Scopes">
            <DataTable
              testid="enforcement-scopes"
              caption="scope modes"
              rows={scopes.data ?? []}
              initialSort={["scope", 1]}
              empty="No scope yet."
              cols={[
                { key: "scope", title: "Scope", value: (s: ScopeView) => s.name, render: (s) => <a href={href(["policies"], { scope: s.name })}>{s.name}</a> },
                {
                  key: "mode",
                  title: "Mode",
                  value: (s) => modes.get(s.name)?.mode ?? "analyze",
                  render: (s) => (
                    <select aria-label={`mode of scope ${s.name}`} value={modes.get(s.name)?.mode ?? "analyze"} onChange={(ev) => setMode(s.name, ev.currentTarget.value)} data-testid="scope-mode">
                      <option value="analyze">analyze</option>
                      <option value="enforce">enforce</option>
                    </select>
                  ),
                },
                { key: "version", title: "Enforced version", value: (s) => modes.get(s.name)?.version ?? s.enforced ?? "" },
                { key: "failOpen", title: "Server lost", value: (s) => (modes.get(s.name)?.failOpen ? "rules removed (fail open)" : "rules kept (fail closed)") },
                { key: "updated", title: "Changed", value: (s) => modes.get(s.name)?.updated ?? "", render: (s) => (modes.get(s.name) ? `${ago(modes.get(s.name)!.updated)} by ${modes.get(s.name)!.updatedBy ?? "?"}` : "") },
              ]}
            />
          </Card>
          <Card title="Nodes">
            <DataTable
              testid="enforcement-agents"
              caption="agents' enforcement"
              rows={e.agents}
              initialSort={["node", 1]}
              empty="No agent enforces yet (start agents with --enforce)."
              cols={[
                {
                  key: "node",
                  title: "Node",
                  value: (a: EnforcementAgent) => a.node,
                  render: (a) => (
                    <button class="link" onClick={() => setOpen(open === a.node ? undefined : a.node)} aria-expanded={open === a.node}>
                      {a.node}
                    </button>
                  ),
                },
                {
                  key: "sync",
                  title: "State",
                  value: (a) => (a.serverLost ? "server lost" : a.inSync ? "in sync" : "behind"),
                  render: (a) => (a.serverLost ? <span class="badge bad">server lost</span> : a.inSync ? <span class="badge ok">in sync</span> : <span class="badge warn">behind</span>),
                },
                { key: "versions", title: "Versions", value: (a) => (a.versions ?? []).join(", ") },
                { key: "pods", title: "Pods", numeric: true, value: (a) => (a.namespaces ?? []).filter((n) => n.target !== "node").length },
                { key: "rules", title: "Rules", numeric: true, value: (a) => (a.namespaces ?? []).reduce((x, n) => x + n.rules, 0) },
                { key: "errors", title: "Errors", numeric: true, value: (a) => (a.errors ?? []).length, render: (a) => ((a.errors ?? []).length ? <span class="warn-text">{a.errors!.length}</span> : "0") },
                { key: "drift", title: "Drift repairs", numeric: true, value: (a) => (a.drift ?? []).length },
                { key: "programmed", title: "Programmed", value: (a) => a.programmed ?? "", render: (a) => ago(a.programmed) },
                { key: "reported", title: "Reported", value: (a) => a.reported, render: (a) => ago(a.reported) },
              ]}
            />
          </Card>
          {agent && (
            <Card title={`Node ${agent.node}`}>
              {(agent.errors ?? []).length > 0 && (
                <div class="error" role="alert">
                  {agent.errors!.map((x) => (
                    <div>{x}</div>
                  ))}
                </div>
              )}
              <DataTable
                caption="programmed namespaces"
                rows={agent.namespaces ?? []}
                pageSize={20}
                cols={[
                  { key: "target", title: "Node / pod", value: (n) => n.target },
                  { key: "scope", title: "Scope", value: (n) => n.scope ?? "" },
                  { key: "version", title: "Version", value: (n) => n.version ?? "" },
                  { key: "rules", title: "Rules", numeric: true, value: (n) => n.rules },
                  { key: "sets", title: "Sets", numeric: true, value: (n) => n.sets },
                  { key: "members", title: "Members", numeric: true, value: (n) => n.members },
                  { key: "programmed", title: "Programmed", value: (n) => n.programmed ?? "", render: (n) => (n.pending ? <span class="badge warn">pending</span> : time(n.programmed)) },
                ]}
              />
              <h2 class="sub">Drift repairs</h2>
              <DataTable
                caption="drift repairs"
                rows={agent.drift ?? []}
                pageSize={10}
                initialSort={["time", -1]}
                empty="No drift: nothing changed the programmed rules."
                cols={[
                  { key: "time", title: "Time", value: (d) => d.time, render: (d) => time(d.time) },
                  { key: "target", title: "Where", value: (d) => d.target },
                  { key: "what", title: "What was restored", value: (d) => d.what },
                  { key: "repaired", title: "Repaired after", numeric: true, value: (d) => d.repairedNs ?? 0, render: (d) => (d.repairedNs ? duration(d.repairedNs / 1e6) : "") },
                ]}
              />
            </Card>
          )}
        </>
      )}
    </>
  );
}
