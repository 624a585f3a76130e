// The value types of the settings table (config-schema.ts) as valibot schemas: each one takes a
// hostile raw value (a YAML scalar or list, an environment string, a flag) and gives the typed
// value or one issue whose message says what was expected.
import os from 'node:os';
import path from 'node:path';
import * as v from 'valibot';
import { isValidPart } from './names.js';
import { parseDuration, parseSize } from './units.js';
import type { Config } from './config.js';

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'ollama-registry');
}

/** The host folder of pushed models unless configured: a name no real registry has. */
export const DEFAULT_PUSH_HOST = 'ollama-registry.local';

/** The candidate within 2 edits of `word` (a typo such as lisen → listen), if any. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

/** Levenshtein distance, with adjacent swaps counted as one edit (lsiten → listen). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 100) return 3;
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** A schema from any raw value to T. */
export type Leaf<T> = v.GenericSchema<unknown, T>;

/** Thrown inside a parse function: the value is refused with this message. */
export class Invalid extends Error {}

/** A raw value as an error message shows it: JSON, cut short, and safe for cyclic YAML (aliases). */
export function show(raw: unknown): string {
  if (typeof raw === 'number' && !Number.isFinite(raw)) return String(raw);
  let s: string;
  try {
    s = JSON.stringify(raw) ?? String(raw);
  } catch {
    return '(a value that refers to itself)';
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** `expected WHAT, got RAW` as an Invalid to throw. */
export function expected(what: string, raw: unknown): Invalid {
  return new Invalid(`expected ${what}, got ${show(raw)}`);
}

/** A leaf from a parse function that throws Invalid (or a keyed error, which passes through). */
export function leaf<T>(parse: (raw: unknown) => T): Leaf<T> {
  return v.pipe(v.unknown(), v.rawTransform<unknown, T>(({ dataset, addIssue, NEVER }) => {
    try {
      return parse(dataset.value);
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      addIssue({ message: e.message });
      return NEVER;
    }
  }));
}

export function text(raw: unknown): string {
  if (typeof raw !== 'string' || raw === '') throw expected('a non-empty string', raw);
  if (raw.length > 4096) throw new Invalid(`expected at most 4096 characters, got ${raw.length}`);
  return raw;
}

export const filePath = leaf((raw) => {
  // A NUL or a control character is no file name a person meant; fs would throw later, elsewhere.
  if ([...text(raw)].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) throw expected('a path without control characters', raw);
  return path.resolve(raw as string);
});

const TRUE = /^(true|yes|1|on)$/i;
const FALSE = /^(false|no|0|off)$/i;
export const bool = v.union([
  v.boolean(),
  v.pipe(v.string(), v.regex(TRUE), v.transform(() => true)),
  v.pipe(v.string(), v.regex(FALSE), v.transform(() => false)),
], (issue) => `expected true or false, got ${show(issue.input)}`);

/** Numbers and their string forms (environment, flags); booleans and '' are not numbers. */
function num(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'string' && raw.trim() !== '' && raw.length < 40) return Number(raw);
  return NaN;
}

/** A whole number from `min` up to `max` (default 2^53). */
export function wholeNumber(min: number, what = `a whole number ≥ ${min}`, max = Number.MAX_SAFE_INTEGER): Leaf<number> {
  return leaf((raw) => {
    const n = num(raw);
    if (!Number.isSafeInteger(n) || n < min) throw expected(what, raw);
    if (n > max) throw expected(`at most ${max}`, raw);
    return n;
  });
}

export function positive(what = 'a number > 0', max = YEARS_10): Leaf<number> {
  return leaf((raw) => {
    const n = num(raw);
    if (!Number.isFinite(n) || n <= 0 || n > max) throw expected(n > max ? `at most ${max}` : what, raw);
    return n;
  });
}

/** The longest wait a node timer takes (2^31-1 ms, 24.8 days); past it node fires after 1 ms. */
export const TIMER_MAX_SECONDS = 24 * 86400;
const YEARS_10 = 10 * 365 * 86400;

/**
 * Seconds from `90`, `30s`, `10m`, `2h`, `1d`. At most `max` (default 24d, a timer's limit, since
 * most durations end up in one); `zero: false` refuses 0.
 */
export function duration(what = 'a duration such as 30m, 6h, 1d or a number of seconds', opts: { zero?: boolean; min?: number; max?: number; maxText?: string } = {}): Leaf<number> {
  const max = opts.max ?? TIMER_MAX_SECONDS;
  return leaf((raw) => {
    const s = parseDuration(raw);
    if (s === null || (s === 0 && opts.zero === false) || s < (opts.min ?? 0)) throw expected(what, raw);
    if (s > max) throw expected(`at most ${opts.maxText ?? '24d'}`, raw);
    return s;
  });
}

/** A duration that is compared with clocks, never waited for: up to 10 years. */
export const age = (what?: string) => duration(what, { max: YEARS_10, maxText: '10 years' });

/** Bytes from `500GB`, `1.5TiB` or a number; at most 2^53. */
export function size(what = 'a size such as 500GB, 1.5TiB or a number of bytes'): Leaf<number> {
  return leaf((raw) => {
    const n = parseSize(raw);
    if (n === null || !Number.isSafeInteger(n)) throw expected(what, raw);
    return n;
  });
}

/** A YAML list, or a comma-separated string (environment, flags); at most 256 items. */
export function list(raw: unknown): unknown[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null;
  if (!items) throw expected('a list (or a comma-separated string)', raw);
  if (items.length > 256) throw new Invalid(`expected at most 256 items, got ${items.length}`);
  return items;
}

/** Host folder names (the first part of a model name: registry.ollama.ai, hf.co). */
export const hostFolders = leaf((raw) => list(raw).map((h) => {
  if (typeof h !== 'string' || !isValidPart('host', h)) throw new Invalid(`invalid host folder name ${show(h)}`);
  return h;
}));

export const hostFolder = leaf((raw) => {
  const h = text(raw);
  if (!isValidPart('host', h)) throw new Invalid(`invalid host folder name ${show(h)}`);
  return h;
});

/** `HOST:PORT`, `[v6]:PORT` or `PORT` (all interfaces). */
function parseListen(raw: unknown): { host: string; port: number } {
  const value = typeof raw === 'number' ? String(raw) : typeof raw === 'string' && raw.length <= 300 ? raw : '';
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw expected('HOST:PORT or PORT', raw);
  return { host: m[1] || m[2] || '0.0.0.0', port };
}
export const listen = leaf(parseListen);

/** An http:// or https:// URL without credentials, query or fragment; trailing slashes dropped. */
export const httpUrl = leaf((raw) => {
  let u: URL;
  try {
    u = new URL(text(raw));
  } catch (e) {
    if (e instanceof Invalid) throw e;
    throw expected('an http:// or https:// URL', raw);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw expected('an http:// or https:// URL', raw);
  if (u.username || u.password || u.search || u.hash) throw new Invalid('the URL must not carry credentials, a query or a fragment');
  return u.href.replace(/\/+$/, '');
});

/** The origin (scheme://host:port) of an http(s) URL without credentials. */
export const httpOrigin = leaf((raw) => {
  const t = text(raw);
  const u = URL.canParse(t) ? new URL(t) : null;
  if (!u || !/^https?:$/.test(u.protocol) || u.username || u.password) throw expected('an http(s) URL without credentials', raw);
  return u.origin;
});

/** One of a few words. */
export function oneOf<const T extends string>(words: readonly T[]): Leaf<T> {
  return v.picklist(words, (issue) => `expected ${words.join('|')}, got ${show(issue.input)}`);
}

/**
 * One setting: its key in the YAML file, its environment variable, how it is checked and where it
 * goes in Config (type-checked against the schema's output), and what the docs say about it.
 */
export interface Setting<T = unknown> {
  key: string;
  env?: string;
  /** The command-line flag(s), for the docs (commands map them to the key). */
  flag?: string;
  /** What it is, one line for the configuration reference. */
  doc: string;
  /** The default as a raw value, parsed by `schema` as any other source would be (a function: depends on the environment). */
  default?: unknown;
  /** What the docs say the default is, when it is not one plain value (or there is none). */
  defaultDoc?: string;
  schema: Leaf<T>;
  set(cfg: Config, value: T): void;
}

/** A table entry; T comes from the schema, so `set` must take what the schema gives. */
export function setting<T>(s: Setting<T>): Setting {
  return s as Setting;
}
