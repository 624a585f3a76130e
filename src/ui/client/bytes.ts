// Sizes as ollama prints them (format.HumanBytes in ollama's source), shared by the command line
// and the web page so both say the same: decimal units B, KB, MB, GB, TB; whole numbers from 10
// up (cut, not rounded: 15.7 MB is "15 MB"), one decimal below 10 unless whole ("3.2 KB", "2 GB").
// No DOM and no Node here: the page's build and the server's build both compile this file.

const UNITS: Array<[number, string]> = [[1e12, 'TB'], [1e9, 'GB'], [1e6, 'MB'], [1e3, 'KB']];

export function formatBytes(n: number): string {
  const b = Math.trunc(n);
  const unit = UNITS.find(([size]) => b >= size);
  if (!unit) return `${b} B`;
  const v = b / unit[0];
  if (v >= 10 || Number.isInteger(v)) return `${Math.trunc(v)} ${unit[1]}`;
  return `${oneDecimal(v)} ${unit[1]}`;
}

/** Go's %.1f: an exact half goes to the even digit (1.25 → 1.2), where toFixed would go up. */
function oneDecimal(v: number): string {
  const t = v * 10;
  const low = Math.floor(t);
  if (t - low === 0.5) return ((low % 2 === 0 ? low : low + 1) / 10).toFixed(1);
  return v.toFixed(1);
}
