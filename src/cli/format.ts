// Sizes: the one formatter the web page uses too (ollama's convention).
export { formatBytes } from '../ui/client/bytes.js';

/** `3 minutes ago`, `2 days ago`, as ollama's `ls` shows times. */
export function formatAgo(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  const steps: Array<[number, string]> = [[60, 'second'], [60, 'minute'], [24, 'hour'], [7, 'day'], [52, 'week']];
  let v = s;
  for (const [n, unit] of steps) {
    if (v < n) return v <= 1 && unit === 'second' ? 'just now' : `${v} ${unit}${v === 1 ? '' : 's'} ago`;
    v = Math.floor(v / n);
  }
  return `${v} year${v === 1 ? '' : 's'} ago`;
}

/** Seconds as `1h`, `30m`, `45s`. */
export function formatSeconds(s: number): string {
  if (s >= 86400 && s % 86400 === 0) return `${s / 86400}d`;
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600}h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

/** Left-aligned columns, two spaces apart. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}
