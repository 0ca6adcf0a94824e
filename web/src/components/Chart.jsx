import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { fmtDuration, fmtNum, fmtPct } from '../lib/format.js';

export const COLORS = ['#4338ca', '#b45309', '#047857', '#be123c', '#0369a1', '#7e22ce', '#4d7c0f', '#a16207', '#0f766e', '#9d174d'];

const H = 3600;
const D = 86400;
/** Tick steps (seconds) for a chart of one time bucket: never finer than the bucket. */
const INCRS = {
  minute: [60, 300, 600, 900, 1800, H, 2 * H, 3 * H, 6 * H, 12 * H, D],
  hour: [H, 2 * H, 3 * H, 4 * H, 6 * H, 12 * H, D, 2 * D, 7 * D],
  day: [D, 2 * D, 3 * D, 7 * D, 14 * D, 30 * D, 60 * D, 90 * D, 180 * D, 365 * D],
  week: [7 * D, 14 * D, 28 * D, 56 * D, 91 * D, 182 * D, 364 * D],
  month: [30 * D, 60 * D, 91 * D, 182 * D, 365 * D],
};

const valueFormat = (kind) => (kind === 'pct' ? fmtPct : kind === 'duration' ? fmtDuration : fmtNum);

/**
 * A uPlot chart. `data` is uPlot's [xs (epoch s), ys…]; `series` describes
 * each y: {label, color?, dash?, bars?, kind? ('count'|'pct'|'duration'), axis? (0|1)}.
 * `tz` is the zone of the time axis. Resizes with its container.
 */
export function Chart({ data, series, height = 240, tz = 'UTC', testid, label, time = true, xValues, unit }) {
  const box = useRef(null);
  const plot = useRef(null);
  const shape = JSON.stringify([series.map((s) => [s.label, s.color, s.dash, s.bars, s.kind, s.axis]), tz, height, time, unit]);
  const shapeRef = useRef('');

  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    if (plot.current && shapeRef.current === shape) {
      plot.current.setData(data);
      return undefined;
    }
    if (plot.current) plot.current.destroy();
    shapeRef.current = shape;
    const kinds = [series.find((s) => !s.axis)?.kind || 'count', series.find((s) => s.axis === 1)?.kind];
    const hasRight = series.some((s) => s.axis === 1);
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height,
      tzDate: time ? (ts) => uPlot.tzDate(new Date(ts * 1e3), tz) : undefined,
      scales: {
        x: { time },
        y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] },
        ...(hasRight ? { y2: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } } : {}),
      },
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      series: [
        time ? {} : { label: 'x', value: (u, v) => (xValues && v != null ? xValues[v] : v) },
        ...series.map((s, i) => {
          const color = s.color || COLORS[i % COLORS.length];
          const fmt = valueFormat(s.kind);
          return {
            label: s.label,
            stroke: color,
            width: s.dash ? 1.5 : 2,
            dash: s.dash ? [6, 5] : undefined,
            fill: s.bars ? `${color}cc` : s.fill ? `${color}1f` : undefined,
            paths: s.bars ? uPlot.paths.bars({ size: [0.75, 40], align: 0 }) : undefined,
            points: { show: !s.bars && data[0] && data[0].length < 60 },
            scale: s.axis === 1 ? 'y2' : 'y',
            spanGaps: false,
            value: (u, v) => (v == null ? '–' : fmt(v)),
          };
        }),
      ],
      axes: [
        {
          stroke: '#374151',
          grid: { stroke: '#e5e7eb' },
          ticks: { stroke: '#d1d5db' },
          ...(time && INCRS[unit] ? { incrs: INCRS[unit], space: 50 } : {}),
          values: time ? undefined : (u, vals) => vals.map((v) => (xValues && Number.isInteger(v) ? xValues[v] ?? '' : '')),
        },
        {
          stroke: '#374151',
          grid: { stroke: '#e5e7eb' },
          ticks: { stroke: '#d1d5db' },
          size: 56,
          values: (u, vals) => vals.map(valueFormat(kinds[0])),
        },
        ...(hasRight
          ? [{ side: 1, scale: 'y2', stroke: '#374151', grid: { show: false }, size: 56, values: (u, vals) => vals.map(valueFormat(kinds[1])) }]
          : []),
      ],
    };
    plot.current = new uPlot(opts, data, el);
    return undefined;
  }, [shape, data]);

  useEffect(() => {
    const el = box.current;
    if (!el || typeof ResizeObserver === 'undefined') return undefined;
    const ro = new ResizeObserver(() => {
      if (plot.current) plot.current.setSize({ width: Math.max(el.clientWidth, 200), height });
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, [height]);

  useEffect(
    () => () => {
      if (plot.current) plot.current.destroy();
      plot.current = null;
    },
    [],
  );

  return <div class="chart" ref={box} data-testid={testid} role="img" aria-label={label} data-points={data[0] ? data[0].length : 0} />;
}
