// Configuration of upstream registries and of which namespaces route to them, validated with
// errors that name the key (config.ts calls in here so it stays one small table).
import { isIP } from 'node:net';
import path from 'node:path';
import { DEFAULT_HOST, isValidPart } from '../names.js';
import { parseDuration as parseSeconds } from '../units.js';
import { bool, closest, filePath, Invalid, leaf, setting, show, TIMER_MAX_SECONDS, type Setting } from '../config-values.js';

export interface UpstreamConfig {
  /** Short name used by routes and in messages. */
  name: string;
  /** Base URL: scheme://host[:port] (a path prefix is kept). */
  url: string;
  /** Host folder that cached content is stored under (default: the URL's host[:port]). */
  host: string;
  /** A cached tag is re-checked upstream when older than this; by-digest manifests never are. */
  freshnessSeconds: number;
  /** Seconds without a response or a body byte before a request counts as failed. */
  timeoutSeconds: number;
  /** Extra attempts for a request that failed with a network error or a 5xx/429. */
  retries: number;
  /** After this many failures in a row the upstream is cut off (fails fast)… */
  maxFailures: number;
  /** …for this many seconds. */
  failTimeoutSeconds: number;
  /** Extra CA certificates (PEM file) trusted for this upstream, on top of the system's. */
  ca?: string;
  /** This upstream's own ed25519 key file, instead of the registry's `upstreamKey`. */
  key?: string;
  /** Credentials for the token realm of a CNCF registry, or its htpasswd (anonymous when absent). */
  username?: string;
  password?: string;
  /**
   * Hosts (names or addresses, no port) this upstream's redirects and token realms may lead to
   * although they are loopback, private or otherwise local; its own host always may.
   */
  allowPrivateHosts: string[];
}

export interface RouteConfig {
  /** A namespace, a prefix glob such as `team-*`, or `*` for every namespace. */
  namespace: string;
  /** Upstream names, tried in order (the later ones are fallback mirrors). */
  upstreams: string[];
}

export class UpstreamConfigError extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
  }
}

/** The fields of one `upstreams:` entry, with what the reference says of each (upstreamFromUrl checks them). */
/** `default` is a raw value, parsed like one from the file; `defaultDoc` says what happens when the field is left out. */
export const UPSTREAM_FIELDS: Array<{ field: string; default?: string | number; defaultDoc?: string; doc: string }> = [
  { field: 'url', defaultDoc: '(required)', doc: 'base URL, `http://` or `https://` (a path prefix is kept)' },
  { field: 'name', defaultDoc: 'the host folder', doc: 'short name for routes and messages (letters, digits, `_ . : -`)' },
  { field: 'host', defaultDoc: 'the URL\'s host[:port]', doc: 'host folder that cached models are stored under' },
  { field: 'freshness', default: '10m', doc: 'a cached tag is re-checked upstream when older than this; by-digest manifests never are' },
  { field: 'timeout', default: '30s', doc: 'no response or no body byte for this long: the request failed' },
  { field: 'retries', default: 2, doc: 'extra attempts after a network error or a 5xx/429' },
  { field: 'maxFailures', default: 5, doc: 'after this many failures in a row the upstream is cut off…' },
  { field: 'failTimeout', default: '30s', doc: '…for this long' },
  { field: 'ca', defaultDoc: 'none', doc: 'extra CA certificates (PEM file) trusted for this upstream' },
  { field: 'key', defaultDoc: '`upstreamKey`', doc: 'this upstream\'s own ed25519 key file' },
  { field: 'username', defaultDoc: 'none (anonymous)', doc: 'for the token realm of a CNCF registry, or its htpasswd' },
  { field: 'password', defaultDoc: 'none', doc: 'with `username`' },
  { field: 'allowPrivateHosts', defaultDoc: 'none', doc: 'hosts (no port) its redirects and token realms may use although private; its own host always may' },
];
const UPSTREAM_KEYS = new Set(UPSTREAM_FIELDS.map((f) => f.field));
const FIELD_DEFAULTS: Record<string, string | number> = Object.fromEntries(UPSTREAM_FIELDS.filter((f) => f.default !== undefined).map((f) => [f.field, f.default!]));

/** A duration (`30s`, `10m`, `2h`, or seconds) with an error naming the key. */
export function parseDuration(v: unknown, key: string, max = TIMER_MAX_SECONDS): number {
  const n = parseSeconds(v);
  if (n !== null && n > max) throw new UpstreamConfigError(key, `expected at most ${max / 86400}d, got ${show(v)}`);
  if (n === null) throw new UpstreamConfigError(key, `expected a duration such as 30s, 10m, 2h or a number of seconds, got ${show(v)}`);
  return n;
}

function count(v: unknown, key: string): number {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new UpstreamConfigError(key, `expected a whole number ≥ 0, got ${show(v)}`);
  return n;
}

export function hostList(v: unknown, key: string): string[] {
  const list = typeof v === 'string' ? v.split(',').map((h) => h.trim()).filter(Boolean) : v;
  const ok = (h: unknown) => typeof h === 'string' && (isIP(h.replace(/^\[|\]$/g, '')) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(h));
  if (!Array.isArray(list) || !list.every(ok)) {
    throw new UpstreamConfigError(key, `expected a list of host names or IP addresses without ports, e.g. [cdn.internal, 10.0.0.7], got ${show(v)}`);
  }
  return list as string[];
}

export function upstreamFromUrl(url: string, key: string, extra: Record<string, unknown> = {}): UpstreamConfig {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UpstreamConfigError(key, `not a URL: ${show(url)} (expected e.g. https://registry.ollama.ai)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UpstreamConfigError(key, `expected an http:// or https:// URL, got ${show(url)}`);
  if (u.username || u.password || u.search || u.hash) throw new UpstreamConfigError(key, 'the URL must not carry credentials, a query or a fragment');
  const host = typeof extra.host === 'string' ? extra.host : u.host;
  if (!isValidPart('host', host)) throw new UpstreamConfigError(`${key}.host`, `invalid host folder name ${show(host)}`);
  const base = u.href.replace(/\/+$/, '');
  const up: UpstreamConfig = {
    name: typeof extra.name === 'string' ? extra.name : host,
    url: base,
    host,
    freshnessSeconds: parseDuration(extra.freshness === undefined ? FIELD_DEFAULTS.freshness : extra.freshness, `${key}.freshness`, 3650 * 86400),
    timeoutSeconds: parseDuration(extra.timeout === undefined ? FIELD_DEFAULTS.timeout : extra.timeout, `${key}.timeout`),
    retries: count(extra.retries === undefined ? FIELD_DEFAULTS.retries : extra.retries, `${key}.retries`),
    maxFailures: count(extra.maxFailures === undefined ? FIELD_DEFAULTS.maxFailures : extra.maxFailures, `${key}.maxFailures`),
    failTimeoutSeconds: parseDuration(extra.failTimeout === undefined ? FIELD_DEFAULTS.failTimeout : extra.failTimeout, `${key}.failTimeout`),
    allowPrivateHosts: extra.allowPrivateHosts === undefined ? [] : hostList(extra.allowPrivateHosts, `${key}.allowPrivateHosts`),
  };
  if (up.timeoutSeconds <= 0) throw new UpstreamConfigError(`${key}.timeout`, 'must be more than 0');
  for (const k of ['ca', 'key', 'username', 'password'] as const) {
    const v = extra[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '') throw new UpstreamConfigError(`${key}.${k}`, 'expected a non-empty string');
    up[k] = k === 'ca' || k === 'key' ? path.resolve(v) : v;
  }
  return up;
}

export function parseUpstreams(raw: unknown, key = 'upstreams'): UpstreamConfig[] {
  if (!Array.isArray(raw)) throw new UpstreamConfigError(key, 'expected a list of upstreams, each with at least a url');
  if (raw.length > 64) throw new UpstreamConfigError(key, `expected at most 64 upstreams, got ${raw.length}`);
  const out: UpstreamConfig[] = [];
  raw.forEach((item, i) => {
    const k = `${key}[${i}]`;
    if (typeof item === 'string') return out.push(upstreamFromUrl(item, k));
    if (!item || typeof item !== 'object' || Array.isArray(item)) throw new UpstreamConfigError(k, 'expected a mapping with a url');
    const o = item as Record<string, unknown>;
    for (const f of Object.keys(o)) {
      if (UPSTREAM_KEYS.has(f)) continue;
      const near = closest(f, [...UPSTREAM_KEYS]);
      throw new UpstreamConfigError(`${k}.${f}`, near ? `unknown setting; did you mean ${near}?` : `unknown setting (known: ${[...UPSTREAM_KEYS].join(', ')})`);
    }
    if (typeof o.url !== 'string') throw new UpstreamConfigError(`${k}.url`, 'required: the base URL of the upstream registry');
    if (o.name !== undefined && (typeof o.name !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/.test(o.name))) {
      throw new UpstreamConfigError(`${k}.name`, 'expected a short name of letters, digits, _ . : -');
    }
    out.push(upstreamFromUrl(o.url, k, o));
  });
  const seen = new Set<string>();
  out.forEach((u, i) => {
    if (seen.has(u.name)) throw new UpstreamConfigError(`${key}[${i}].name`, `duplicate upstream name ${show(u.name)}`);
    seen.add(u.name);
  });
  return out;
}

export function parseRoutes(raw: unknown, key = 'routes'): RouteConfig[] {
  if (!Array.isArray(raw)) throw new UpstreamConfigError(key, 'expected a list of {namespace, upstreams}');
  if (raw.length > 1000) throw new UpstreamConfigError(key, `expected at most 1000 routes, got ${raw.length}`);
  return raw.map((item, i) => {
    const k = `${key}[${i}]`;
    const o = (item && typeof item === 'object' ? item : {}) as Record<string, unknown>;
    for (const f of Object.keys(o)) if (f !== 'namespace' && f !== 'upstreams') throw new UpstreamConfigError(`${k}.${f}`, 'unknown setting (known: namespace, upstreams)');
    const ns = o.namespace;
    if (typeof ns !== 'string' || !(ns === '*' || isValidPart('namespace', ns.endsWith('*') ? ns.slice(0, -1) || 'x' : ns))) {
      throw new UpstreamConfigError(`${k}.namespace`, `expected a namespace, a prefix ending in * or *, got ${show(ns)}`);
    }
    const ups = typeof o.upstreams === 'string' ? [o.upstreams] : o.upstreams;
    if (!Array.isArray(ups) || ups.length === 0 || ups.some((u) => typeof u !== 'string')) {
      throw new UpstreamConfigError(`${k}.upstreams`, 'expected a list of upstream names (tried in order)');
    }
    return { namespace: ns, upstreams: ups as string[] };
  });
}

/**
 * What `pull` uses when no upstream is configured, as ollama itself does: registry.ollama.ai for
 * names without a host, and https://HOST for each host typed in a name (hf.co/…), or http://HOST
 * when `insecure` (ollama's --insecure). Short timeouts and one retry, so an unreachable default
 * fails in seconds with a message naming the host.
 */
export function ollamaDefaults(hosts: string[], insecure = false, allowPrivateHosts: string[] = []): { upstreams: UpstreamConfig[]; routes: RouteConfig[] } {
  const extra = { timeout: '10s', retries: 1, allowPrivateHosts };
  const main = upstreamFromUrl(`https://${DEFAULT_HOST}`, 'upstream', extra);
  const others = [...new Set(hosts.map((h) => h.toLowerCase()))].filter((h) => h !== DEFAULT_HOST)
    .map((h) => upstreamFromUrl(`${insecure ? 'http' : 'https'}://${h}`, 'upstream', extra));
  return { upstreams: [main, ...others], routes: [{ namespace: '*', upstreams: [main.name] }] };
}

/** Check that routes name known upstreams; with no routes, every namespace uses every upstream in order. */
export function finishRouting(upstreams: UpstreamConfig[], routes: RouteConfig[]): RouteConfig[] {
  const names = new Set(upstreams.map((u) => u.name));
  routes.forEach((r, i) => r.upstreams.forEach((n, j) => {
    if (!names.has(n)) throw new UpstreamConfigError(`routes[${i}].upstreams[${j}]`, `no upstream is named ${show(n)} (known: ${[...names].join(', ') || 'none'})`);
  }));
  if (routes.length === 0 && upstreams.length > 0) return [{ namespace: '*', upstreams: upstreams.map((u) => u.name) }];
  return routes;
}

/** The upstream names for a namespace: the first matching route wins (case-insensitive). */
export function routeFor(routes: RouteConfig[], namespace: string): string[] {
  const ns = namespace.toLowerCase();
  for (const r of routes) {
    const p = r.namespace.toLowerCase();
    if (p === '*' || p === ns || (p.endsWith('*') && ns.startsWith(p.slice(0, -1)))) return r.upstreams;
  }
  return [];
}

/** The rows of the settings table about upstreams (one URL, the long form, routes, the sign-in key, offline). */
export const UPSTREAM_SETTINGS: Setting[] = [
  setting({ key: 'upstream', env: 'OLLAMA_REGISTRY_UPSTREAM', flag: '`--upstream`', defaultDoc: 'none (`serve`: no pull-through; `pull`: registry.ollama.ai, as ollama)',
    schema: leaf((raw) => {
      if (typeof raw !== 'string' || raw === '') throw new Invalid('expected the URL of the upstream registry');
      return upstreamFromUrl(raw, 'upstream');
    }),
    set: (c, v) => { c.upstreams = [v]; c.routes = []; },
    doc: 'one upstream URL for every namespace (the one-setting form of `upstreams`)' }),
  setting({ key: 'upstreamAllowPrivateHosts', env: 'OLLAMA_REGISTRY_UPSTREAM_ALLOW_PRIVATE_HOSTS', defaultDoc: 'none',
    schema: leaf((raw) => hostList(raw, 'upstreamAllowPrivateHosts')), set: (c, v) => { c.upstreamAllowPrivateHosts = v; },
    doc: 'hosts every upstream\'s redirects and token realm may use although private (comma list)' }),
  setting({ key: 'upstreams', default: [], defaultDoc: 'none', schema: leaf((raw) => parseUpstreams(raw)), set: (c, v) => { c.upstreams = v; },
    doc: 'registries to pull through from, each with its own settings: see [examples/config.yaml](examples/config.yaml)' }),
  setting({ key: 'routes', default: [], defaultDoc: 'every namespace uses every upstream, in order', schema: leaf((raw) => parseRoutes(raw)), set: (c, v) => { c.routes = v; },
    doc: 'which namespaces use which upstreams, first match wins: see [examples/config.yaml](examples/config.yaml)' }),
  setting({ key: 'upstreamKey', env: 'OLLAMA_REGISTRY_UPSTREAM_KEY', flag: '`--upstream-key`', defaultDoc: '`.ollama-registry/id_ed25519`, made on first need',
    schema: filePath, set: (c, v) => { c.upstreamKey = v; },
    doc: 'the ed25519 key for signing in to upstreams (ollama\'s format)' }),
  setting({ key: 'offline', env: 'OLLAMA_REGISTRY_OFFLINE', flag: '`--offline` (`serve`, `pull`)', default: false, schema: bool, set: (c, v) => { c.offline = v; },
    doc: 'never contact an upstream: serve what is cached, marked stale' }),
];
