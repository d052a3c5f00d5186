import { useMemo, useState } from "preact/hooks";
import { api, cves, Finding, ImageSummary, Registry } from "../api";
import { Card, DataTable, ErrorBox, Loading, Severity, Tabs } from "../components";
import { ago, num, time } from "../format";
import { useApi, usePoll } from "../hooks";
import { href, Route, setParams } from "../router";

const SEVS = ["critical", "high", "medium", "low", "unknown"];
const sevRank = (s: string) => {
  const i = SEVS.indexOf((s || "unknown").toLowerCase());
  return i < 0 ? SEVS.length : i;
};

type View = "findings" | "images" | "workloads" | "packages" | "registries";

const wlLink = (id: string) => <a href={href(["workload", ...id.split("/")])}>{id.split("/").slice(-2).join("/")}</a>;

export function VulnsPage({ route }: { route: Route }) {
  const view = (route.params.get("view") as View) || "findings";
  const sev = route.params.get("severity") ?? "";
  const findings = useApi(() => api<{ items: Finding[] }>("/api/v1/vulnerabilities"), []);
  const images = useApi(() => api<ImageSummary[]>("/api/v1/images"), []);
  const regs = useApi(() => api<Registry[]>("/api/v1/registries"), []);
  const all = findings.data?.items ?? [];
  const shown = useMemo(() => (sev ? all.filter((f) => (f.severity || "unknown").toLowerCase() === sev) : all), [all, sev]);
  const counts = useMemo(() => {
    // A vulnerability counts once per image, at its severity.
    const c: Record<string, Set<string>> = {};
    for (const s of SEVS) c[s] = new Set();
    for (const f of all) c[(f.severity || "unknown").toLowerCase()]?.add((cves(f)[0] ?? f.id) + "@" + f.image);
    return c;
  }, [all]);
  const byWorkload = useMemo(() => {
    const m = new Map<string, { id: string; findings: Finding[]; images: Set<string> }>();
    for (const f of all)
      for (const w of f.workloads ?? []) {
        let e = m.get(w);
        if (!e) m.set(w, (e = { id: w, findings: [], images: new Set() }));
        e.findings.push(f);
        if (f.image) e.images.add(f.image);
      }
    return [...m.values()];
  }, [all]);
  const byPackage = useMemo(() => {
    const m = new Map<string, { key: string; pkg: string; version: string; eco: string; ids: Set<string>; worst: string; images: Set<string>; fixed: string }>();
    for (const f of all) {
      const k = `${f.ecosystem} ${f.package} ${f.installed}`;
      let e = m.get(k);
      if (!e) m.set(k, (e = { key: k, pkg: f.package, version: f.installed, eco: f.ecosystem, ids: new Set(), worst: "unknown", images: new Set(), fixed: "" }));
      e.ids.add(cves(f)[0] ?? f.id);
      if (sevRank(f.severity) < sevRank(e.worst)) e.worst = (f.severity || "unknown").toLowerCase();
      if (f.image) e.images.add(f.image);
      if (f.fixed && f.fixed > e.fixed) e.fixed = f.fixed;
    }
    return [...m.values()];
  }, [all]);
  const err = findings.error ?? images.error ?? regs.error;
  // Findings name their image by digest; show the reference it runs as.
  const imageName = useMemo(() => {
    const m = new Map<string, string>();
    for (const i of images.data ?? []) if (i.digest) m.set(i.digest, i.image);
    return (d?: string) => (d ? (m.get(d) ?? d) : "");
  }, [images.data]);
  const pending = (images.data ?? []).filter((i) => !i.scanned && !i.error).length;
  const lastScan = (regs.data ?? []).map((r) => r.lastScan ?? "").sort().pop();
  return (
    <>
      <div class="page-head">
        <h1>Vulnerabilities</h1>
        <p class="muted">
          Known vulnerabilities in the packages of the images your pods run, matched against the imported OSV database.
          {lastScan ? ` Last scan ${ago(lastScan)} (${time(lastScan)}).` : ""}
        </p>
        <VulnDB onImported={() => (findings.reload(), images.reload())} />
      </div>
      <ErrorBox error={err} />
      <nav class="sev-cards" aria-label="filter by severity">
        {SEVS.map((s) => (
          <a class={"sev-card sev-" + s + (sev === s ? " on" : "")} href={href(["vulnerabilities"], { view: "findings", severity: sev === s ? undefined : s })}>
            <span class="n">{num(counts[s].size)}</span>
            <span>{s}</span>
          </a>
        ))}
        <div class="sev-card info">
          <span class="n">{num((images.data ?? []).filter((i) => i.scanned).length)}</span>
          <span>
            images scanned{pending ? `, ${pending} waiting` : ""}
            {pending ? <span class="spinner" aria-label="scans in progress" /> : null}
          </span>
        </div>
      </nav>
      <Tabs
        label="vulnerability views"
        value={view}
        onChange={(v) => setParams({ view: v, severity: sev || undefined })}
        tabs={[
          ["findings", "By vulnerability"],
          ["images", "By image"],
          ["workloads", "By workload"],
          ["packages", "By package"],
          ["registries", "Registries"],
        ]}
      />
      {findings.loading && !findings.data && <Loading what="findings" />}
      {view === "findings" && findings.data && (
        <DataTable
          testid="vuln-table"
          caption="findings"
          rows={shown}
          csv="palisade-vulnerabilities.csv"
          initialSort={["severity", 1]}
          cols={[
            { key: "severity", title: "Severity", value: (f: Finding) => sevRank(f.severity) * 100 - (f.score ?? 0), render: (f) => <Severity s={f.severity} />, width: "7em" },
            { key: "score", title: "CVSS", numeric: true, value: (f) => f.score ?? 0, render: (f) => (f.score ? f.score.toFixed(1) : "") },
            { key: "id", title: "Vulnerability", value: (f) => cves(f)[0] ?? f.id, render: (f) => <span class="mono nowrap" title={f.summary}>{cves(f).join(", ") || f.id}</span> },
            { key: "package", title: "Package", value: (f) => f.package },
            { key: "installed", title: "Installed", value: (f) => f.installed, render: (f) => <span class="mono small">{f.installed}</span> },
            { key: "fixed", title: "Fixed in", value: (f) => f.fixed ?? "", render: (f) => <span class="mono small">{f.fixed ?? "no fix"}</span> },
            {
              key: "image",
              title: "Image",
              value: (f) => imageName(f.image),
              render: (f) => (
                <span class="small mono" title={f.image}>
                  {imageName(f.image).split("@")[0]}
                </span>
              ),
            },
            { key: "workloads", title: "Workloads", value: (f) => (f.workloads ?? []).join(" "), render: (f) => <span class="small">{(f.workloads ?? []).slice(0, 3).map((w, i) => <>{i ? ", " : ""}{wlLink(w)}</>)}</span> },
          ]}
          empty={sev ? `No ${sev} vulnerability.` : "No vulnerability found (is the database imported and a registry allowed for scanning?)."}
        />
      )}
      {view === "images" && images.data && (
        <DataTable
          testid="image-table"
          caption="images"
          rows={images.data}
          csv="palisade-images.csv"
          initialSort={["max", -1]}
          cols={[
            { key: "image", title: "Image", value: (i: ImageSummary) => i.image, render: (i) => <span class="mono small">{i.image}</span> },
            { key: "registry", title: "Registry", value: (i) => i.registry },
            {
              key: "status",
              title: "Scan",
              value: (i) => (i.error ? "error" : i.scanned ? "scanned" : "waiting"),
              render: (i) => (i.error ? <span class="badge bad" title={i.error}>error</span> : i.scanned ? <span class="badge ok">scanned</span> : <span class="badge warn">waiting</span>),
            },
            { key: "max", title: "Max CVSS", numeric: true, value: (i) => i.summary.maxScore, render: (i) => (i.summary.maxScore ? i.summary.maxScore.toFixed(1) : "") },
            { key: "critical", title: "Critical", numeric: true, value: (i) => i.summary.critical },
            { key: "high", title: "High", numeric: true, value: (i) => i.summary.high },
            { key: "medium", title: "Medium", numeric: true, value: (i) => i.summary.medium },
            { key: "low", title: "Low", numeric: true, value: (i) => i.summary.low },
            { key: "workloads", title: "Workloads", numeric: true, value: (i) => i.workloads.length },
          ]}
        />
      )}
      {view === "workloads" && (
        <DataTable
          caption="workloads with vulnerabilities"
          rows={byWorkload}
          csv="palisade-vulnerable-workloads.csv"
          initialSort={["worst", 1]}
          cols={[
            { key: "id", title: "Workload", value: (w) => w.id, render: (w) => wlLink(w.id) },
            { key: "worst", title: "Worst", value: (w) => Math.min(...w.findings.map((f) => sevRank(f.severity))), render: (w) => <Severity s={SEVS[Math.min(...w.findings.map((f) => sevRank(f.severity)))] ?? "unknown"} /> },
            { key: "n", title: "Findings", numeric: true, value: (w) => w.findings.length },
            { key: "images", title: "Images", value: (w) => [...w.images].map(imageName).join(" "), render: (w) => <span class="small mono">{[...w.images].map((i) => imageName(i).split("@")[0]).join(", ")}</span> },
          ]}
        />
      )}
      {view === "packages" && (
        <DataTable
          caption="vulnerable packages"
          rows={byPackage}
          csv="palisade-vulnerable-packages.csv"
          initialSort={["worst", 1]}
          cols={[
            { key: "pkg", title: "Package", value: (p) => p.pkg },
            { key: "version", title: "Installed", value: (p) => p.version, render: (p) => <span class="mono small">{p.version}</span> },
            { key: "eco", title: "Ecosystem", value: (p) => p.eco },
            { key: "worst", title: "Worst", value: (p) => sevRank(p.worst), render: (p) => <Severity s={p.worst} /> },
            { key: "ids", title: "Vulnerabilities", value: (p) => [...p.ids].join(" "), render: (p) => <span class="mono small">{[...p.ids].join(", ")}</span> },
            { key: "fixed", title: "Fixed in", value: (p) => p.fixed, render: (p) => <span class="mono small">{p.fixed}</span> },
            { key: "images", title: "Images", numeric: true, value: (p) => p.images.size },
          ]}
        />
      )}
      {view === "registries" && regs.data && <Registries regs={regs.data} reload={regs.reload} />}
    </>
  );
}

function Registries({ regs, reload }: { regs: Registry[]; reload: () => void }) {
  const [edit, setEdit] = useState<string>();
  const [user, setUser] = useState("");
  const [pass, setPass] = useState("");
  const [msg, setMsg] = useState<string>();
  return (
    <Card title="Registries">
      <DataTable
        testid="registries-table"
        caption="registries"
        rows={regs}
        cols={[
          { key: "name", title: "Registry", value: (r: Registry) => r.name, render: (r) => <span class="mono">{r.name}</span> },
          { key: "images", title: "Images", numeric: true, value: (r) => r.images },
          {
            key: "cred",
            title: "Credentials",
            value: (r) => (r.needsCredentials ? "needed" : r.hasCredentials ? "stored" : "none"),
            render: (r) => (r.needsCredentials ? <span class="badge bad">needed</span> : r.hasCredentials ? <span class="badge ok">stored</span> : <span class="muted">none (anonymous)</span>),
          },
          { key: "last", title: "Last scan", value: (r) => r.lastScan ?? "", render: (r) => (r.lastScan ? `${time(r.lastScan)} (${ago(r.lastScan)})` : "never") },
          { key: "err", title: "Last error", value: (r) => r.lastError ?? "", render: (r) => <span class="small">{r.lastError}</span> },
          {
            key: "act",
            title: "",
            value: () => "",
            render: (r) => (
              <button class="secondary" onClick={() => (setEdit(r.name), setMsg(undefined))} data-testid="set-credentials" data-registry={r.name}>
                Set credentials
              </button>
            ),
          },
        ]}
        empty="No image observed yet."
      />
      {edit && (
        <form
          class="inline-form"
          onSubmit={async (e) => {
            e.preventDefault();
            try {
              await api(`/api/v1/registries/${encodeURIComponent(edit)}/credentials`, { method: "POST", body: JSON.stringify({ username: user, password: pass }) });
              setMsg(`Credentials for ${edit} stored; its images are scanned again.`);
              setEdit(undefined);
              setPass("");
              reload();
            } catch (err) {
              setMsg((err as Error).message);
            }
          }}
        >
          <strong>{edit}</strong>
          <label>
            user <input value={user} onInput={(e) => setUser(e.currentTarget.value)} autocomplete="off" data-testid="cred-user" />
          </label>
          <label>
            password <input type="password" value={pass} onInput={(e) => setPass(e.currentTarget.value)} autocomplete="off" data-testid="cred-password" />
          </label>
          <button type="submit" disabled={!user || !pass} data-testid="cred-store">
            Store
          </button>
          <button type="button" class="ghost" onClick={() => setEdit(undefined)}>
            Cancel
          </button>
        </form>
      )}
      {msg && (
        <p role="status" data-testid="cred-message">
          {msg}
        </p>
      )}
    </Card>
  );
}

// GET /api/v1/vulndb (internal/server/vulndbstatus.go).
interface VulnDBStatus {
  generation: number;
  advisories: number;
  running?: { path: string; started: string; done: number; total: number };
  last?: { path: string; started: string; finished: string; error?: string; stats: { files: number; added: number; updated: number; skipped: number } };
  percent?: number;
}

// VulnDB shows the database's size and last import, the progress of an
// import under way (polled every second while one runs), and a form to
// import from the server's import directory (--vulndb-import-dir).
function VulnDB({ onImported }: { onImported: () => void }) {
  const status = usePoll(() => api<VulnDBStatus>("/api/v1/vulndb"), (x) => !!x.running, 1000, []);
  const [open, setOpen] = useState(false);
  const [path, setPath] = useState("");
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<string>();
  const start = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMsg(undefined);
    // The import answers when done; meanwhile the status shows progress.
    const req = api<{ files: number; added: number; updated: number }>("/api/v1/vulndb/import", { method: "POST", body: JSON.stringify({ path: path.trim() }) });
    setTimeout(status.reload, 300);
    try {
      const r = await req;
      setMsg(`Imported ${num(r.files)} documents: ${num(r.added)} new, ${num(r.updated)} changed advisories.`);
      onImported();
    } catch (e) {
      setMsg((e as Error).message);
    } finally {
      setBusy(false);
      status.reload();
    }
  };
  const st = status.data;
  if (status.error) return <ErrorBox error={status.error} />;
  if (!st) return null;
  const last = st.last;
  return (
    <div class="vulndb small" data-testid="vulndb-status" data-advisories={st.advisories} data-imported={last?.finished ?? ""}>
      <span>
        Database: <strong>{num(st.advisories)}</strong> advisories
        {last ? (
          <>
            {", "}
            {last.error ? "last import failed" : "imported"} <span title={time(last.finished)} data-testid="vulndb-imported">{ago(last.finished)}</span> ({time(last.finished)}) from <span class="mono">{last.path}</span>
            {last.error ? <span class="bad"> — {last.error}</span> : `: ${num(last.stats.files)} documents, ${num(last.stats.added)} new, ${num(last.stats.updated)} changed`}
          </>
        ) : (
          ", not imported since the server started"
        )}
        .{" "}
      </span>
      {st.running ? (
        <span role="status" aria-live="polite" data-testid="vulndb-progress">
          Importing <span class="mono">{st.running.path}</span>: <progress max={100} value={st.percent ?? 0} aria-label="import progress" /> {st.percent !== undefined ? `${st.percent}% (${num(st.running.done)} of ${num(st.running.total)})` : "listing…"}
        </span>
      ) : (
        <button class="link" onClick={() => setOpen(!open)} aria-expanded={open}>
          Import…
        </button>
      )}
      {open && !st.running && (
        <form class="inline-form" onSubmit={start} data-testid="vulndb-form">
          <label>
            directory or zip under the server's import directory <input class="mono" value={path} onInput={(e) => setPath(e.currentTarget.value)} placeholder="e.g. osv-2026-12.zip" data-testid="vulndb-path" />
          </label>
          <button type="submit" disabled={busy || !path.trim()}>
            Import
          </button>
        </form>
      )}
      {msg && <p role="status" data-testid="vulndb-message">{msg}</p>}
    </div>
  );
}
