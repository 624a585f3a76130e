// Result rows shared by every bench, and the one table printer.

export interface Row {
  metric: string;
  unit: string;
  /** Our median (or single) value. */
  ours: number;
  oursRuns?: number[];
  /** The value we are compared with (Caddy for the core bench), when there is one. */
  baseline?: number;
  baselineRuns?: number[];
  baselineName?: string;
  /** ours / baseline, when a baseline exists. */
  ratio?: number;
  /** The goal in words, e.g. ">= 1.0x" or "<= 150 MiB". */
  goal: string;
  pass?: boolean;
  note?: string;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return Math.round(n).toString();
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function withSpread(value: number, runs?: number[]): string {
  if (!runs || runs.length < 2) return fmt(value);
  return `${fmt(value)} [${fmt(Math.min(...runs))}-${fmt(Math.max(...runs))}]`;
}

/** Prints rows as an aligned text table (Markdown-compatible pipes). */
export function printTable(title: string, rows: Row[], out: (s: string) => void = console.log): void {
  const header = ['metric', 'unit', 'ours median [min-max]', 'baseline median [min-max]', 'ours/baseline', 'goal', 'met'];
  const lines = rows.map((r) => [
    r.metric,
    r.unit,
    withSpread(r.ours, r.oursRuns),
    r.baseline === undefined ? '-' : `${withSpread(r.baseline, r.baselineRuns)}${r.baselineName ? ` (${r.baselineName})` : ''}`,
    r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}x`,
    r.goal,
    r.pass === undefined ? '-' : r.pass ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  out(`\n${title}`);
  out(row(header));
  out(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const l of lines) out(row(l));
  for (const r of rows) if (r.note) out(`  ${r.metric}: ${r.note}`);
}
