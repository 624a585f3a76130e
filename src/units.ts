// Sizes and durations as people write them in flags and config: `50GB`, `1.5TiB`, `90m`, `1h`.

export const MiB = 2 ** 20;
/** Buffer size of file streams and copies: 1 MiB, few syscalls and events per GiB. */
export const IO_CHUNK = MiB;

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** `50GB` (decimal, as ollama shows sizes), `40GiB` (binary), or a number of bytes; null if unreadable. */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.floor(v) : null;
  if (typeof v !== 'string') return null;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
  const mult = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  return m && mult !== undefined ? Math.floor(Number(m[1]) * mult) : null;
}

/** `90`, `90s`, `10m`, `2h`, `1d` → seconds; null if unreadable. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : null;
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(v.trim()) : null;
  if (!m) return null;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? 's']!;
}
