// Numbers and times for people.

const nf = new Intl.NumberFormat("en-US");
export const num = (n: number | undefined): string => (n === undefined || n === null ? "" : nf.format(n));

export function bytes(n: number | undefined): string {
  if (!n) return "0 B";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + " " + u[i];
}

const pad = (n: number) => String(n).padStart(2, "0");

// time: "2026-12-01 15:04:05" in local time, with a relative hint.
export function time(t: string | undefined): string {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d.getTime()) || d.getFullYear() < 2000) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(t: string | undefined, now = Date.now()): string {
  if (!t) return "never";
  const d = new Date(t).getTime();
  if (isNaN(d) || d < 946684800000) return "never";
  const s = Math.round((now - d) / 1000);
  if (s < 0) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// endpoint: how a flow end reads: "sock-shop/carts-7d9f:8080" or the IP.
export function endpoint(e: { ip: string; port?: number; name?: string; namespace?: string; kind?: string }, withPort = true): string {
  const who = e.name ? (e.namespace ? `${e.namespace}/${e.name}` : e.name) : e.ip;
  return withPort && e.port ? `${who}:${e.port}` : who;
}
