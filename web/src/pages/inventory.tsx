import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { api, ApiError, getSchemas, q, Schemas, Workload } from "../api";
import { Column, DataTable, ErrorBox, Loading } from "../components";
import { FilterBox, inventoryValues } from "../filterbox";
import { href, Route, setParams } from "../router";

export const EXAMPLES = [
  "namespace = sock-shop and kind = pod",
  "kind = service and service.type = NodePort",
  "owner.kind = Deployment and label.app in (carts, orders)",
  'vuln.max_cvss >= 7 or vuln.cve exists',
];

export function displayName(w: Workload): string {
  return w.namespace ? `${w.namespace}/${w.name}` : w.name;
}

export const workloadCols: Column<Workload>[] = [
  { key: "kind", title: "Kind", value: (w) => w.kind, width: "7em" },
  { key: "namespace", title: "Namespace", value: (w) => w.namespace ?? "" },
  {
    key: "name",
    title: "Name",
    value: (w) => w.name,
    render: (w) => (
      <a href={href(["workload", ...w.id.split("/")])} class="strong">
        {w.name}
      </a>
    ),
  },
  { key: "owner", title: "Owner", value: (w) => (w.owner ? `${w.owner.kind}/${w.owner.name}` : "") },
  { key: "node", title: "Node", value: (w) => w.node ?? "" },
  { key: "ips", title: "IPs", value: (w) => [...(w.ips ?? []), ...(w.cidrs ?? [])].join(" "), render: (w) => <span class="mono">{[...(w.ips ?? []), ...(w.cidrs ?? [])].join(", ")}</span> },
  {
    key: "labels",
    title: "Labels",
    value: (w) =>
      Object.entries(w.labels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
    render: (w) => (
      <span class="small">
        {Object.entries(w.labels ?? {})
          .slice(0, 3)
          .map(([k, v]) => `${k}=${v}`)
          .join(", ")}
        {Object.keys(w.labels ?? {}).length > 3 ? " …" : ""}
      </span>
    ),
  },
  {
    key: "cvss",
    title: "Max CVSS",
    numeric: true,
    value: (w) => Number(w.attrs?.["vuln.max_cvss"]?.[0] ?? 0),
    render: (w) => {
      const v = Number(w.attrs?.["vuln.max_cvss"]?.[0] ?? 0);
      return v ? <span class={"cvss " + (v >= 9 ? "sev-critical" : v >= 7 ? "sev-high" : v >= 4 ? "sev-medium" : "sev-low")}>{v.toFixed(1)}</span> : "";
    },
  },
];

// useInventoryCompletion: the schema's fields and, for values, a sample of
// the live inventory (loaded once per page).
export function useCompletion(eager = false) {
  const [schemas, setSchemas] = useState<Schemas>();
  const [sample, setSample] = useState<Workload[]>([]);
  const [want, setWant] = useState(eager);
  useEffect(() => {
    getSchemas().then(setSchemas, () => {});
  }, []);
  // The sample of live values is loaded when the filter box is first used,
  // not with the page: a first page must not wait for it.
  useEffect(() => {
    if (want) api<{ items: Workload[] }>("/api/v1/inventory?limit=2000").then((r) => setSample(r.items ?? []), () => {});
  }, [want]);
  const values = useMemo(() => inventoryValues(sample), [sample]);
  const load = useCallback(() => setWant(true), []);
  return { schemas, values, sample, load };
}

const PAGE = 50;

export function InventoryPage({ route }: { route: Route }) {
  const filter = route.params.get("filter") ?? "";
  const [text, setText] = useState(filter);
  const [res, setRes] = useState<{ items?: Workload[]; error?: ApiError; loading: boolean; partial?: boolean }>({ loading: true });
  const { schemas, values, load } = useCompletion();
  const deleted = route.params.get("deleted") === "1";
  useEffect(() => setText(filter), [filter]);
  // The first page (the API's order, by ID) first; when there are more
  // matches, every one of them next, for sorting, paging and export. The
  // second request starts after the first answered, so the two never
  // compete for the server.
  useEffect(() => {
    let live = true;
    const url = (limit?: number) => "/api/v1/inventory" + q({ filter, include_deleted: deleted ? "true" : undefined, limit });
    const fail = (e: ApiError) => live && setRes({ error: e, loading: false });
    setRes((r) => ({ ...r, loading: true }));
    api<{ items: Workload[] }>(url(PAGE)).then((r) => {
      if (!live) return;
      const items = r.items ?? [];
      if (items.length < PAGE) {
        setRes({ items, loading: false });
        return;
      }
      setRes({ items, loading: true, partial: true });
      api<{ items: Workload[] }>(url()).then((all) => live && setRes({ items: all.items ?? [], loading: false }), fail);
    }, fail);
    return () => {
      live = false;
    };
  }, [filter, deleted]);
  // A mark for the benchmark of the first page (docs/BENCHMARKS.md).
  useEffect(() => {
    if (res.items && !performance.getEntriesByName("palisade:inventory-rendered").length) performance.mark("palisade:inventory-rendered");
  }, [res]);
  const filterError = res.error?.status === 400 ? res.error : undefined;
  return (
    <>
      <div class="page-head">
        <h1>Inventory</h1>
        <p class="muted">Pods, services, nodes, namespaces and external ranges of every connected cluster, searchable with the filter language.</p>
      </div>
      <FilterBox
        label="inventory filter"
        value={text}
        onChange={setText}
        onSubmit={(v) => setParams({ filter: v.trim(), deleted: deleted ? "1" : undefined })}
        schema={schemas?.inventory}
        values={values}
        onFocus={load}
        error={filterError}
        placeholder="e.g. namespace = sock-shop and kind = pod   (press / to focus, ↓ for completion)"
      />
      <div class="examples">
        <span class="muted">Examples:</span>
        {EXAMPLES.map((e) => (
          <a href={href(["inventory"], { filter: e })} class="chip">
            {e}
          </a>
        ))}
        <label class="check">
          <input type="checkbox" checked={deleted} onChange={(e) => setParams({ filter, deleted: e.currentTarget.checked ? "1" : undefined })} /> include deleted
        </label>
      </div>
      {res.error && !filterError && <ErrorBox error={res.error} />}
      {res.loading && !res.items && <Loading what="workloads" />}
      {res.items && !filterError && (
        <DataTable
          key={res.partial ? "first" : "all"}
          testid="inventory-table"
          caption="workloads"
          cols={workloadCols}
          rows={res.items}
          pageSize={PAGE}
          partial={res.partial}
          csv="palisade-inventory.csv"
          empty={filter ? "No workload matches this filter." : "The inventory is empty: is a cluster connected?"}
        />
      )}
    </>
  );
}
