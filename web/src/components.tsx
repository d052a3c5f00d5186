import { ComponentChildren } from "preact";
import { useMemo, useState } from "preact/hooks";
import { ApiError } from "./api";

export function ErrorBox({ error }: { error?: ApiError }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      {error.status ? `${error.status}: ` : ""}
      {error.message}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <div class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> Loading {what}…
    </div>
  );
}

export function Card({ title, children, actions }: { title?: ComponentChildren; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      {(title || actions) && (
        <header>
          {title && <h2>{title}</h2>}
          {actions && <div class="actions">{actions}</div>}
        </header>
      )}
      {children}
    </section>
  );
}

export function KV({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="kv">
      {rows
        .filter(([, v]) => v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0))
        .map(([k, v]) => (
          <>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </>
        ))}
    </dl>
  );
}

export function Tags({ tags }: { tags?: Record<string, string> }) {
  const e = Object.entries(tags ?? {});
  if (!e.length) return <span class="muted">none</span>;
  return (
    <ul class="tags">
      {e.map(([k, v]) => (
        <li>
          <span class="tk">{k}</span>
          <span class="tv">{v}</span>
        </li>
      ))}
    </ul>
  );
}

export function Severity({ s }: { s: string }) {
  const v = (s || "unknown").toLowerCase();
  return <span class={"sev sev-" + v}>{v}</span>;
}

export function Tabs<T extends string>({ tabs, value, onChange, label }: { tabs: [T, string][]; value: T; onChange: (t: T) => void; label: string }) {
  return (
    <div class="tabs" role="tablist" aria-label={label}>
      {tabs.map(([k, text]) => (
        <button
          role="tab"
          aria-selected={k === value}
          tabIndex={k === value ? 0 : -1}
          class={k === value ? "on" : ""}
          onClick={() => onChange(k)}
          onKeyDown={(e) => {
            const i = tabs.findIndex(([x]) => x === value);
            if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
              const n = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length][0];
              onChange(n);
              const list = (e.currentTarget as HTMLElement).parentElement;
              requestAnimationFrame(() => (list?.querySelector('[aria-selected="true"]') as HTMLElement | null)?.focus());
            }
          }}
        >
          {text}
        </button>
      ))}
    </div>
  );
}

// --- table ----------------------------------------------------------------

export interface Column<T> {
  key: string;
  title: string;
  // value is what sorting and CSV use; render (default: value) what shows.
  value: (row: T) => string | number;
  render?: (row: T) => ComponentChildren;
  numeric?: boolean;
  width?: string;
}

function csvCell(v: string | number): string {
  const s = String(v ?? "");
  return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

export function toCSV<T>(cols: Column<T>[], rows: T[]): string {
  return [cols.map((c) => csvCell(c.title)).join(","), ...rows.map((r) => cols.map((c) => csvCell(c.value(r))).join(","))].join("\r\n") + "\r\n";
}

function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function DataTable<T>({
  cols,
  rows,
  pageSize = 50,
  csv,
  initialSort,
  empty = "Nothing matches.",
  testid,
  caption,
  partial,
}: {
  cols: Column<T>[];
  rows: T[];
  pageSize?: number;
  csv?: string;
  initialSort?: [string, 1 | -1];
  empty?: string;
  testid?: string;
  caption?: string;
  partial?: boolean; // rows are the first page only; the rest is loading
}) {
  const [sort, setSort] = useState<[string, 1 | -1] | undefined>(initialSort);
  const [page, setPage] = useState(0);
  const sorted = useMemo(() => {
    if (!sort) return rows;
    const c = cols.find((c) => c.key === sort[0]);
    if (!c) return rows;
    const vals = rows.map((r, i) => [c.value(r), i] as const);
    vals.sort((a, b) => {
      const x = a[0],
        y = b[0];
      const d = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return d * sort[1] || a[1] - b[1];
    });
    return vals.map(([, i]) => rows[i]);
  }, [rows, sort]);
  const pages = Math.max(1, Math.ceil(sorted.length / pageSize));
  const p = Math.min(page, pages - 1);
  const shown = sorted.slice(p * pageSize, (p + 1) * pageSize);
  return (
    <div class="table-wrap" data-testid={testid}>
      <div class="table-bar">
        <span class="muted" data-testid="row-count">
          {rows.length === 0 ? "no rows" : `${(p * pageSize + 1).toLocaleString("en-US")}–${Math.min((p + 1) * pageSize, sorted.length).toLocaleString("en-US")} of ${partial ? "…" : sorted.length.toLocaleString("en-US")}`}
        </span>
        {partial && <span class="spinner" aria-label="loading every match" />}
        <span class="spacer" />
        {pages > 1 && (
          <nav class="pager" aria-label="pages">
            <button onClick={() => setPage(0)} disabled={p === 0} aria-label="first page">
              «
            </button>
            <button onClick={() => setPage(p - 1)} disabled={p === 0} aria-label="previous page">
              ‹
            </button>
            <span>
              page {p + 1} of {pages}
            </span>
            <button onClick={() => setPage(p + 1)} disabled={p >= pages - 1} aria-label="next page">
              ›
            </button>
            <button onClick={() => setPage(pages - 1)} disabled={p >= pages - 1} aria-label="last page">
              »
            </button>
          </nav>
        )}
        {csv && (
          <button class="secondary" onClick={() => download(csv, toCSV(cols, sorted))} disabled={!rows.length || partial}>
            Export CSV
          </button>
        )}
      </div>
      <table>
        {caption && <caption class="sr-only">{caption}</caption>}
        <thead>
          <tr>
            {cols.map((c) => {
              const on = sort?.[0] === c.key;
              return (
                <th
                  scope="col"
                  class={c.numeric ? "num" : ""}
                  style={c.width ? { width: c.width } : undefined}
                  aria-sort={on ? (sort![1] === 1 ? "ascending" : "descending") : "none"}
                >
                  <button class="th" disabled={partial} onClick={() => setSort(on && sort![1] === 1 ? [c.key, -1] : [c.key, 1])}>
                    {c.title}
                    <span class="arrow" aria-hidden="true">
                      {on ? (sort![1] === 1 ? "▲" : "▼") : ""}
                    </span>
                  </button>
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <tr>
              {cols.map((c) => (
                <td class={c.numeric ? "num" : ""}>{c.render ? c.render(r) : c.value(r)}</td>
              ))}
            </tr>
          ))}
          {!rows.length && (
            <tr>
              <td colSpan={cols.length} class="empty">
                {empty}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
