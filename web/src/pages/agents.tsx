import { useState } from "preact/hooks";
import { AgentStatus, api } from "../api";
import { DataTable, ErrorBox, Loading } from "../components";
import { ago, num, time } from "../format";
import { useApi, useInterval } from "../hooks";

export function AgentsPage() {
  const agents = useApi(() => api<{ agents: AgentStatus[] }>("/api/v1/agents"), []);
  const [msg, setMsg] = useState<string>();
  useInterval(agents.reload, 5000);
  const setMode = async (node: string, mode: string) => {
    try {
      await api(`/api/v1/agents/${encodeURIComponent(node)}/config`, { method: "PUT", body: JSON.stringify({ mode }) });
      setMsg(`${node}: ${mode} mode; the agent picks it up with its next report.`);
      agents.reload();
    } catch (e) {
      setMsg(`${node}: ${(e as Error).message}`);
    }
  };
  return (
    <>
      <div class="page-head">
        <h1>Agents</h1>
        <p class="muted">
          One flow agent per node. <em>Conversation</em> mode reports one summary per client, server and port every interval; <em>detailed</em> mode reports every connection with its source
          port.
        </p>
      </div>
      <ErrorBox error={agents.error} />
      {msg && (
        <p role="status" class="note">
          {msg}
        </p>
      )}
      {agents.loading && !agents.data && <Loading what="agents" />}
      {agents.data && (
        <DataTable
          testid="agents-table"
          caption="agents"
          rows={agents.data.agents ?? []}
          initialSort={["node", 1]}
          empty="No agent has reported yet. Start one with: palisade agent --server URL --node NODE"
          cols={[
            { key: "node", title: "Node", value: (a: AgentStatus) => a.node, render: (a) => <strong>{a.node}</strong> },
            {
              key: "mode",
              title: "Mode",
              value: (a) => a.config.mode,
              render: (a) => (
                <select aria-label={`flow mode of ${a.node}`} value={a.config.mode || "conversation"} onChange={(e) => setMode(a.node, e.currentTarget.value)} data-testid="agent-mode">
                  <option value="conversation">conversation</option>
                  <option value="detailed">detailed</option>
                </select>
              ),
            },
            { key: "reported", title: "Agent reports", value: (a) => a.health.mode ?? "" },
            {
              key: "seen",
              title: "Last report",
              value: (a) => a.lastSeen ?? "",
              render: (a) => {
                const stale = !a.lastSeen || Date.now() - Date.parse(a.lastSeen) > 60e3;
                return (
                  <span title={time(a.lastSeen)} class={stale ? "warn-text" : ""}>
                    {ago(a.lastSeen)}
                  </span>
                );
              },
            },
            { key: "batches", title: "Batches", numeric: true, value: (a) => a.batches, render: (a) => num(a.batches) },
            { key: "fseen", title: "Flows seen", numeric: true, value: (a) => a.health.flowsSeen, render: (a) => num(a.health.flowsSeen) },
            { key: "fsent", title: "Sent", numeric: true, value: (a) => a.health.flowsSent, render: (a) => num(a.health.flowsSent) },
            { key: "fdrop", title: "Dropped", numeric: true, value: (a) => a.health.flowsDropped, render: (a) => num(a.health.flowsDropped) },
            { key: "spool", title: "Spooled", numeric: true, value: (a) => a.health.spooled, render: (a) => num(a.health.spooled) },
          ]}
        />
      )}
    </>
  );
}
