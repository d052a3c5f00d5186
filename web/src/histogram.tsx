// Histogram of flows over time, drawn by uPlot. Dragging over it selects a
// time range.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef } from "preact/hooks";

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export function Histogram({
  times,
  series,
  onSelect,
  height = 160,
  label,
  lines,
}: {
  times: number[]; // bucket starts, unix seconds
  series: { label: string; values: number[]; color: string }[];
  onSelect?: (from: number, to: number) => void;
  height?: number;
  label: string;
  lines?: boolean; // lines with points instead of bars (several series side by side)
}) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const box = el.current!;
    const fg = cssVar("--muted");
    const grid = cssVar("--line");
    const bars = uPlot.paths.bars!({ size: [0.9, 40] });
    const plot = new uPlot(
      {
        width: box.clientWidth || 800,
        height,
        legend: { show: true },
        cursor: { drag: { x: !!onSelect, y: false, setScale: false } },
        scales: { x: { time: true } },
        axes: [
          { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
          { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 50 },
        ],
        series: [
          {},
          ...series.map((s) =>
            lines
              ? { label: s.label, stroke: cssVar(s.color), width: 2, points: { show: true, size: 5 } }
              : { label: s.label, stroke: cssVar(s.color), fill: cssVar(s.color) + "99", paths: bars, points: { show: false } },
          ),
        ],
        hooks: {
          setSelect: [
            (u: uPlot) => {
              if (!onSelect || u.select.width < 5) return;
              const a = u.posToVal(u.select.left, "x");
              const b = u.posToVal(u.select.left + u.select.width, "x");
              onSelect(a, b);
            },
          ],
        },
      },
      [times, ...series.map((s) => s.values)],
      box,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: box.clientWidth, height }));
    ro.observe(box);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [times, series, document.documentElement.dataset.theme]);
  return <div class="chart" ref={el} role="img" aria-label={label} />;
}

// buckets counts items by time into n equal buckets over [from, to] (ms).
export function buckets<T>(items: T[], at: (x: T) => number, from: number, to: number, n: number, weight: (x: T) => number = () => 1) {
  const step = Math.max(1, (to - from) / n);
  const times: number[] = [];
  const values = new Array(n).fill(0);
  for (let i = 0; i < n; i++) times.push((from + i * step) / 1000);
  for (const x of items) {
    const i = Math.floor((at(x) - from) / step);
    if (i >= 0 && i < n) values[i] += weight(x);
  }
  return { times, values, step };
}
