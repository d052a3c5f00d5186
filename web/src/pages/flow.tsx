import { api, Flow, FlowDetail } from "../api";
import { Card, ErrorBox, KV, Loading } from "../components";
import { bytes, duration, endpoint, num, time } from "../format";
import { useApi } from "../hooks";
import { href } from "../router";
import { Ep } from "./flows";

const REASONS: Record<string, string> = {
  "clusterip-dnat": "the same connection before and after the ClusterIP's destination NAT",
  "nodeport-dnat-snat": "the same connection before and after the NodePort's destination and source NAT",
  "egress-snat": "the same connection before and after the node's source NAT to the outside",
  "overlay-vxlan": "the pod-to-pod flow and the VXLAN tunnel flow carrying it between nodes",
  "overlay-ipip": "the pod-to-pod flow and the IP-in-IP tunnel flow carrying it between nodes",
};

const clip = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

function short(f: Flow): string {
  return `${f.proto} ${endpoint(f.src, f.mode === "detailed")} → ${endpoint(f.dst)}`;
}

// RelatedDiagram draws this flow and its related flows as boxes joined by
// the relation's reason; each box links to its flow.
function RelatedDiagram({ flow, related }: { flow: Flow; related: Flow[] }) {
  const reasons = new Map((flow.related ?? []).map((r) => [r.id, r.reason]));
  const W = 1100,
    bw = 430,
    bh = 54,
    gap = 18;
  const H = Math.max(bh + 20, related.length * (bh + gap) + 20);
  const cy = H / 2;
  return (
    <svg class="diagram" viewBox={`0 0 ${W} ${H}`} width="100%" role="img" aria-label="this flow and its related flows" data-testid="related-diagram">
      <g>
        <rect x={10} y={cy - bh / 2} width={bw} height={bh} rx={6} class="box self" />
        <text x={22} y={cy - 4} class="t1">
          this flow
        </text>
        <text x={22} y={cy + 16} class="t2">
          {clip(short(flow), 58)}
        </text>
      </g>
      {related.map((r, i) => {
        const y = 10 + i * (bh + gap);
        const reason = reasons.get(r.id) ?? "related";
        return (
          <g>
            <path d={`M ${10 + bw} ${cy} C ${W / 2} ${cy}, ${W / 2} ${y + bh / 2}, ${W - 10 - bw} ${y + bh / 2}`} class="edge" />
            <text x={W / 2} y={(cy + y + bh / 2) / 2 - 4} class="reason" text-anchor="middle">
              {reason}
            </text>
            <a href={href(["flow", r.id])} data-testid="related-flow">
              <rect x={W - 10 - bw} y={y} width={bw} height={bh} rx={6} class="box" />
              <title>{short(r)}</title>
              <text x={W - bw} y={y + 22} class="t1">
                {clip(short(r), 50)}
              </text>
              <text x={W - bw} y={y + 42} class="t2">
                {clip("seen at " + r.points.map((p) => p.node + "/" + p.iface).join(", "), 60)}
              </text>
            </a>
          </g>
        );
      })}
    </svg>
  );
}

export function FlowPage({ id }: { id: string }) {
  const d = useApi(() => api<FlowDetail>("/api/v1/flows/" + encodeURIComponent(id)), [id]);
  if (d.error) return <ErrorBox error={d.error} />;
  if (!d.data) return <Loading what="the flow" />;
  const f = d.data;
  const related = f.relatedFlows ?? [];
  return (
    <>
      <div class="page-head">
        <p class="crumbs">
          <a href="#/flows">Flows</a> › <span class="mono">{f.id}</span>
        </p>
        <h1>
          {f.proto.toUpperCase()} <Ep e={f.src} port={f.mode === "detailed"} /> → <Ep e={f.dst} port />
        </h1>
      </div>
      <div class="grid2">
        <Card title="Flow">
          <KV
            rows={[
              ["Start", time(f.start)],
              ["End", time(f.end)],
              ["Duration", duration(Date.parse(f.end) - Date.parse(f.start))],
              ["Mode", f.mode],
              ["Connections", num(f.conns)],
              ["Client → server", `${num(f.fwdPackets)} packets, ${bytes(f.fwdBytes)}`],
              ["Server → client", `${num(f.revPackets)} packets, ${bytes(f.revBytes)}`],
              ["TCP flags", (f.flags ?? []).join(" ")],
              ["Outcome", f.replied ? "replied" : "no reply seen"],
              ["Tunnel", f.tunnel],
              ["Service", f.dst.service],
            ]}
          />
        </Card>
        <Card title="Endpoints">
          <table>
            <thead>
              <tr>
                <th scope="col"></th>
                <th scope="col">Source</th>
                <th scope="col">Destination</th>
              </tr>
            </thead>
            <tbody>
              {(
                [
                  ["IP", (e: Flow["src"]) => e.ip + (e.port ? ":" + e.port : "")],
                  ["Workload", (e: Flow["src"]) => (e.workload ? <a href={href(["workload", ...e.workload.split("/")])}>{e.workload}</a> : "")],
                  ["Kind", (e: Flow["src"]) => e.kind ?? ""],
                  ["Owner", (e: Flow["src"]) => (e.owner ? `${e.owner.kind}/${e.owner.name}` : "")],
                  ["Node", (e: Flow["src"]) => e.node ?? ""],
                  [
                    "Labels",
                    (e: Flow["src"]) =>
                      Object.entries(e.labels ?? {})
                        .map(([k, v]) => `${k}=${v}`)
                        .join(", "),
                  ],
                ] as [string, (e: Flow["src"]) => any][]
              ).map(([k, g]) => (
                <tr>
                  <th scope="row">{k}</th>
                  <td class="small">{g(f.src)}</td>
                  <td class="small">{g(f.dst)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      </div>
      <Card title={`Observation points (${f.points.length})`}>
        <table data-testid="observation-points">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Interface</th>
              <th scope="col">Kind</th>
              <th scope="col">Pod</th>
            </tr>
          </thead>
          <tbody>
            {f.points.map((p) => (
              <tr>
                <td>{p.node}</td>
                <td class="mono">{p.iface}</td>
                <td>{p.kind}</td>
                <td>{p.pod ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Card>
      <Card title={`Related flows (${related.length})`}>
        {related.length === 0 ? (
          <p class="muted">No related flow: this connection was not translated (NAT) or tunnelled on its way.</p>
        ) : (
          <>
            <RelatedDiagram flow={f} related={related} />
            <ul class="plain small">
              {(f.related ?? []).map((r) => (
                <li>
                  <span class="badge">{r.reason}</span> {REASONS[r.reason] ?? ""} —{" "}
                  <a href={href(["flow", r.id])} class="mono">
                    {r.id}
                  </a>
                </li>
              ))}
            </ul>
          </>
        )}
      </Card>
    </>
  );
}
