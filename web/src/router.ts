// Hash routing: /#/flows?filter=... so the server serves one index.html and
// never needs to know the console's pages.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string[];
  params: URLSearchParams;
}

export function parse(hash: string): Route {
  const h = hash.replace(/^#\/?/, "");
  const [p, qs] = h.split("?", 2);
  return { path: p.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(qs ?? "") };
}

export function useRoute(): Route {
  const [r, setR] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setR(parse(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return r;
}

export function href(path: string[], params?: Record<string, string | undefined>): string {
  const p = path.map(encodeURIComponent).join("/");
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) if (v) u.set(k, v);
  const s = u.toString();
  return "#/" + p + (s ? "?" + s : "");
}

// setParams rewrites the current page's query without a new history entry
// when replace is set (typing), or with one (a submitted search).
export function setParams(params: Record<string, string | undefined>, replace = false) {
  const r = parse(location.hash);
  const next = href(r.path, params);
  if (replace) history.replaceState(null, "", next);
  else location.hash = next;
}
