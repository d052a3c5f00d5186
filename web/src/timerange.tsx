import { useState } from "preact/hooks";

export const PRESETS: [string, string][] = [
  ["5m", "last 5 min"],
  ["15m", "last 15 min"],
  ["1h", "last hour"],
  ["6h", "last 6 h"],
  ["24h", "last 24 h"],
  ["168h", "last 7 days"],
];

const DUR: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3 };

// resolve turns the API's from/to forms (a duration before now, RFC 3339,
// unix seconds) into milliseconds.
export function resolve(v: string | null | undefined, def: number, now = Date.now()): number {
  if (!v) return def;
  const m = /^-?(\d+(?:\.\d+)?)(s|m|h)$/.exec(v);
  if (m) return now - Number(m[1]) * DUR[m[2]];
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return isNaN(t) ? def : t;
}

const local = (ms: number) => {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
};

export function TimeRange({ from, to, onChange }: { from: string; to: string; onChange: (from: string, to: string) => void }) {
  const custom = !!to || !PRESETS.some(([k]) => k === from);
  const [a, setA] = useState(() => local(resolve(from, Date.now() - 3600e3)));
  const [b, setB] = useState(() => local(resolve(to, Date.now())));
  return (
    <div class="timerange" role="group" aria-label="time range">
      <label for="tr-preset" class="sr-only">
        time range
      </label>
      <select
        id="tr-preset"
        value={custom ? "custom" : from}
        onChange={(e) => {
          const v = e.currentTarget.value;
          if (v === "custom") onChange(new Date(resolve(from, Date.now() - 3600e3)).toISOString(), new Date(resolve(to, Date.now())).toISOString());
          else onChange(v, "");
        }}
      >
        {PRESETS.map(([k, t]) => (
          <option value={k}>{t}</option>
        ))}
        <option value="custom">custom…</option>
      </select>
      {custom && (
        <>
          <label>
            from <input type="datetime-local" value={a} onChange={(e) => setA(e.currentTarget.value)} />
          </label>
          <label>
            to <input type="datetime-local" value={b} onChange={(e) => setB(e.currentTarget.value)} />
          </label>
          <button class="secondary" onClick={() => onChange(new Date(a).toISOString(), new Date(b).toISOString())}>
            Apply
          </button>
        </>
      )}
    </div>
  );
}
