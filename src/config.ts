// One typed configuration: defaults < YAML file < environment < command-line flags.
// Every error names the key it is about.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_HOST, isValidPart } from './names.js';
import { finishRouting, hostList, parseRoutes, parseUpstreams, upstreamFromUrl, UpstreamConfigError, type RouteConfig, type UpstreamConfig } from './upstream/config.js';
import { parsePolicy, PolicyConfigError, type PolicyRule } from './auth/rules.js';
import { parseDuration, parseSize } from './units.js';
import { applyMirrorKey, type MirrorConfig } from './mirror/config.js';
import { applyLimit, defaultLimits, type Limits } from './limits.js';

export interface Config {
  /** The data folder: an ollama models folder plus .ollama-registry/. */
  data: string;
  listen: { host: string; port: number };
  tls?: { cert: string; key: string };
  /** Host folders searched first, in order, when a request names only namespace/model. */
  hosts: string[];
  log: { level: string; format: 'json' | 'text' | 'auto' };
  /** How long in-flight requests may finish after SIGTERM before they are cut. */
  shutdownTimeoutSeconds: number;
  /** Registries this one pulls through from (empty: no pull-through). */
  upstreams: UpstreamConfig[];
  /** Which namespaces use which upstreams, first match wins (default: all upstreams, in order). */
  routes: RouteConfig[];
  /**
   * The registry's own ed25519 key (OpenSSH format, as ollama's ~/.ollama/id_ed25519) for
   * upstreams that want ollama's signed sign-in. Default: .ollama-registry/id_ed25519 in the
   * data folder, made on first need. An upstream's own `key:` wins.
   */
  upstreamKey?: string;
  /** Hosts every upstream's redirects and token realm may use although private (env and flag form of allowPrivateHosts). */
  upstreamAllowPrivateHosts?: string[];
  /** Never contact an upstream: serve what is cached, say so when it is stale. */
  offline: boolean;
  /** Allow/deny rules for pull, pull-through and push (file only; reloaded when the file changes). */
  policy: PolicyRule[];
  /** The YAML file the settings came from, if any (watched for policy changes). */
  configFile?: string;
  /** Housekeeping of the data folder: gc, the size cap and its eviction. */
  storage: {
    /** Evict least-recently-pulled cached models while blobs take more bytes than this (0: no cap). */
    maxSize: number;
    /** Run gc (and the size cap) inside `serve` this often (0: never). */
    gcIntervalSeconds: number;
    /** gc never deletes a blob younger than this: a push or a fill may be about to reference it. */
    gcGraceSeconds: number;
    /** Host folders whose models are a cache of an upstream (evictable), besides the upstreams' own. */
    cachedHosts: string[];
    /** Writes (uploads, fills, imports) are refused below this much free space: the smaller of the two set. */
    minFree: MinFree;
    /** A local folder for work that needs random access (fill staging, pushed parts, hashing); default <data>/.ollama-registry/scratch. */
    scratch?: string;
    /** A lease (a fill's owner) not renewed for this long is free: another process takes the work over. */
    leaseSeconds: number;
    /** The URL other registry processes reach this one at (fills they follow); default: the address `serve` listens on. */
    advertiseUrl?: string;
  };
  /** Quotas of push sessions: per requester (user, key, or address when anonymous) and in total; 0 = no cap of its own. */
  uploads: { maxSessions: number; maxSessionsPerClient: number; maxBytes: number; maxBytesPerClient: number };
  /** Host folder that pushed models are stored under; searched before every other host folder. */
  pushHost: string;
  /** Whether DELETE of tags and manifests is allowed (to principals with the delete right). */
  allowDelete: boolean;
  /** Push sessions untouched for this long are removed. */
  uploadMaxAgeHours: number;
  /** Transparent mirror of registry.ollama.ai (proxy and DNS mode); absent when off. */
  mirror?: MirrorConfig;
  auth: {
    /** Pulls need no credentials. Writes always do. */
    anonymousRead: boolean;
    /** Lifetime of the tokens the token endpoint issues. */
    tokenTtlSeconds: number;
    /** Lifetime of signed blob URLs (only used when reads need credentials). */
    blobUrlTtlSeconds: number;
  };
  /** Timeouts, connection caps and password-check limits (see limits.ts). */
  limits: Limits;
}

/** A free-space floor: bytes, a percentage of the file system, or both (the smaller applies). */
export interface MinFree { bytes?: number; percent?: number }

export class ConfigError extends Error {
  constructor(key: string, message: string) {
    super(`config: ${key}: ${message}`);
    this.name = 'ConfigError';
  }
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'ollama-registry');
}

export function defaults(env: NodeJS.ProcessEnv = process.env): Config {
  return {
    data: defaultDataDir(env),
    listen: { host: '0.0.0.0', port: 8080 },
    hosts: [DEFAULT_HOST],
    log: { level: 'info', format: 'auto' },
    shutdownTimeoutSeconds: 30,
    upstreams: [],
    routes: [],
    offline: false,
    policy: [],
    // 1 GiB free, or 5% of a small file system (a 8 GiB disk keeps 410 MiB).
    storage: { maxSize: 0, gcIntervalSeconds: 0, gcGraceSeconds: 3600, cachedHosts: [], minFree: { bytes: 2 ** 30, percent: 5 }, leaseSeconds: 30 },
    uploads: { maxSessions: 1000, maxSessionsPerClient: 100, maxBytes: 0, maxBytesPerClient: 0 },
    pushHost: DEFAULT_PUSH_HOST,
    allowDelete: false,
    uploadMaxAgeHours: 24,
    auth: { anonymousRead: true, tokenTtlSeconds: 900, blobUrlTtlSeconds: 86_400 },
    limits: defaultLimits(),
  };
}

/** The host folder of pushed models unless configured: a name no real registry has. */
export const DEFAULT_PUSH_HOST = 'ollama-registry.local';

export function parseListen(value: string, key = 'listen'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(key, `expected HOST:PORT or PORT, got ${JSON.stringify(value)}`);
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

/** The keys a user may set, with their environment variable. */
const ENV: Array<[string, string]> = [
  ['data', 'OLLAMA_REGISTRY_DATA'],
  ['listen', 'OLLAMA_REGISTRY_LISTEN'],
  ['tls.cert', 'OLLAMA_REGISTRY_TLS_CERT'],
  ['tls.key', 'OLLAMA_REGISTRY_TLS_KEY'],
  ['hosts', 'OLLAMA_REGISTRY_HOSTS'],
  ['log.level', 'OLLAMA_REGISTRY_LOG_LEVEL'],
  ['log.format', 'OLLAMA_REGISTRY_LOG_FORMAT'],
  ['shutdownTimeoutSeconds', 'OLLAMA_REGISTRY_SHUTDOWN_TIMEOUT'],
  // `upstream: URL` is the one-setting form: URL is the upstream for every namespace.
  ['upstream', 'OLLAMA_REGISTRY_UPSTREAM'],
  // The one-setting form's allowPrivateHosts (hosts its redirects and token realm may use).
  ['upstreamAllowPrivateHosts', 'OLLAMA_REGISTRY_UPSTREAM_ALLOW_PRIVATE_HOSTS'],
  ['upstreams', ''],
  ['upstreamKey', 'OLLAMA_REGISTRY_UPSTREAM_KEY'],
  ['routes', ''],
  ['offline', 'OLLAMA_REGISTRY_OFFLINE'],
  ['policy', ''],
  ['storage.maxSize', 'OLLAMA_REGISTRY_MAX_SIZE'],
  ['storage.gcInterval', 'OLLAMA_REGISTRY_GC_INTERVAL'],
  ['storage.gcGrace', 'OLLAMA_REGISTRY_GC_GRACE'],
  ['storage.cachedHosts', 'OLLAMA_REGISTRY_CACHED_HOSTS'],
  ['storage.minFree', 'OLLAMA_REGISTRY_MIN_FREE'],
  ['storage.scratch', 'OLLAMA_REGISTRY_SCRATCH'],
  ['storage.lease', 'OLLAMA_REGISTRY_LEASE'],
  ['storage.advertiseUrl', 'OLLAMA_REGISTRY_ADVERTISE_URL'],
  ['uploads.maxSessions', 'OLLAMA_REGISTRY_UPLOAD_MAX_SESSIONS'],
  ['uploads.maxSessionsPerClient', 'OLLAMA_REGISTRY_UPLOAD_MAX_SESSIONS_PER_CLIENT'],
  ['uploads.maxBytes', 'OLLAMA_REGISTRY_UPLOAD_MAX_BYTES'],
  ['uploads.maxBytesPerClient', 'OLLAMA_REGISTRY_UPLOAD_MAX_BYTES_PER_CLIENT'],
  ['pushHost', 'OLLAMA_REGISTRY_PUSH_HOST'],
  ['allowDelete', 'OLLAMA_REGISTRY_ALLOW_DELETE'],
  ['uploadMaxAgeHours', 'OLLAMA_REGISTRY_UPLOAD_MAX_AGE_HOURS'],
  ['auth.anonymousRead', 'OLLAMA_REGISTRY_ANONYMOUS_READ'],
  ['auth.tokenTtlSeconds', 'OLLAMA_REGISTRY_TOKEN_TTL'],
  ['auth.blobUrlTtlSeconds', 'OLLAMA_REGISTRY_BLOB_URL_TTL'],
  ['mirror.enabled', 'OLLAMA_REGISTRY_MIRROR'],
  ['mirror.dir', 'OLLAMA_REGISTRY_MIRROR_DIR'],
  ['mirror.hosts', 'OLLAMA_REGISTRY_MIRROR_HOSTS'],
  ['mirror.listen', 'OLLAMA_REGISTRY_MIRROR_LISTEN'],
  ['mirror.tunnel', 'OLLAMA_REGISTRY_MIRROR_TUNNEL'],
  ['mirror.maxTunnels', ''],
];

type Flat = Record<string, unknown>;

function flatten(obj: unknown, prefix = '', out: Flat = {}): Flat {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = obj;
  return out;
}

/** The candidate within 2 edits of `word` (a typo such as lisen → listen), if any. */
function closest(word: string, candidates: string[]): string | undefined {
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

function apply(cfg: Config, flat: Flat, source: string): void {
  const known = new Set(ENV.map(([k]) => k));
  for (const [key, raw] of Object.entries(flat)) {
    if (raw === undefined) continue;
    if (key.startsWith('limits.')) {
      const why = applyLimit(cfg.limits, key.slice(7), raw);
      if (why) throw new ConfigError(key, `${why} (in ${source})`);
      continue;
    }
    if (!known.has(key)) {
      const near = closest(key, [...known]);
      throw new ConfigError(key, `unknown setting (in ${source})${near ? `; did you mean ${near}?` : ''}`);
    }
    const str = (v: unknown) => {
      if (typeof v !== 'string' || v === '') throw new ConfigError(key, `expected a non-empty string (in ${source})`);
      return v;
    };
    const bool = (v: unknown) => {
      if (typeof v === 'boolean') return v;
      if (typeof v === 'string' && /^(true|yes|1|on)$/i.test(v)) return true;
      if (typeof v === 'string' && /^(false|no|0|off)$/i.test(v)) return false;
      throw new ConfigError(key, `expected true or false, got ${JSON.stringify(v)} (in ${source})`);
    };
    const positive = (v: unknown) => {
      const n = Number(v);
      if (v === '' || typeof v === 'boolean' || !Number.isFinite(n) || n <= 0) throw new ConfigError(key, `expected a number > 0, got ${JSON.stringify(v)} (in ${source})`);
      return n;
    };
    try {
      const mirror = applyMirrorKey(cfg.mirror, key, raw, (v) => parseListen(v, key));
      if (mirror !== false) {
        cfg.mirror = mirror;
        continue;
      }
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError(key, `${(e as Error).message} (in ${source})`);
    }
    try {
      if (applyUpstreamKey(cfg, key, raw)) continue;
    } catch (e) {
      if (e instanceof UpstreamConfigError) throw new ConfigError(e.key, `${e.message} (in ${source})`);
      throw e;
    }
    switch (key) {
      case 'data': cfg.data = path.resolve(str(raw)); break;
      case 'listen': cfg.listen = parseListen(typeof raw === 'number' ? String(raw) : str(raw), key); break;
      case 'tls.cert': cfg.tls = { cert: path.resolve(str(raw)), key: cfg.tls?.key ?? '' }; break;
      case 'tls.key': cfg.tls = { cert: cfg.tls?.cert ?? '', key: path.resolve(str(raw)) }; break;
      case 'hosts':
      case 'storage.cachedHosts': {
        const list = Array.isArray(raw) ? raw : str(raw).split(',').map((s) => s.trim()).filter(Boolean);
        for (const h of list) if (typeof h !== 'string' || !isValidPart('host', h)) throw new ConfigError(key, `invalid host folder name ${JSON.stringify(h)}`);
        if (key === 'hosts') cfg.hosts = list as string[];
        else cfg.storage.cachedHosts = list as string[];
        break;
      }
      case 'storage.scratch': cfg.storage.scratch = path.resolve(str(raw)); break;
      case 'storage.advertiseUrl': {
        const u = URL.canParse(str(raw)) ? new URL(str(raw)) : null;
        if (!u || !/^https?:$/.test(u.protocol) || u.username || u.password) throw new ConfigError(key, `expected an http(s) URL without credentials, got ${JSON.stringify(raw)} (in ${source})`);
        cfg.storage.advertiseUrl = u.origin;
        break;
      }
      case 'storage.maxSize': {
        const n = parseSize(raw);
        if (n === null) throw new ConfigError(key, `expected a size such as 500GB, 1.5TiB or a number of bytes, got ${JSON.stringify(raw)} (in ${source})`);
        cfg.storage.maxSize = n;
        break;
      }
      case 'storage.minFree': {
        const pct = typeof raw === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(raw) : null;
        const n = pct ? null : parseSize(raw);
        if (pct && Number(pct[1]) <= 100) cfg.storage.minFree = { percent: Number(pct[1]) };
        else if (n !== null) cfg.storage.minFree = { bytes: n };
        else throw new ConfigError(key, `expected a size such as 1GiB, a percentage of the disk such as 5%, or 0, got ${JSON.stringify(raw)} (in ${source})`);
        break;
      }
      case 'uploads.maxSessions':
      case 'uploads.maxSessionsPerClient': {
        const n = Number(raw);
        if (raw === '' || typeof raw === 'boolean' || !Number.isSafeInteger(n) || n < 0) {
          throw new ConfigError(key, `expected a whole number ≥ 0 (0: no cap), got ${JSON.stringify(raw)} (in ${source})`);
        }
        cfg.uploads = { ...cfg.uploads, [key.slice('uploads.'.length)]: n };
        break;
      }
      case 'uploads.maxBytes':
      case 'uploads.maxBytesPerClient': {
        const n = parseSize(raw);
        if (n === null) throw new ConfigError(key, `expected a size such as 100GB or a number of bytes (0: no cap), got ${JSON.stringify(raw)} (in ${source})`);
        cfg.uploads = { ...cfg.uploads, [key.slice('uploads.'.length)]: n };
        break;
      }
      case 'storage.gcInterval':
      case 'storage.gcGrace':
      case 'storage.lease': {
        const n = parseDuration(raw);
        if (n === null || (key === 'storage.lease' && n < 1)) throw new ConfigError(key, `expected a duration such as 30m, 6h, 1d or a number of seconds, got ${JSON.stringify(raw)} (in ${source})`);
        if (key === 'storage.gcInterval') cfg.storage.gcIntervalSeconds = n;
        else if (key === 'storage.lease') cfg.storage.leaseSeconds = n;
        else cfg.storage.gcGraceSeconds = n;
        break;
      }
      case 'log.level': {
        const v = str(raw);
        if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(v)) throw new ConfigError(key, `expected trace|debug|info|warn|error|silent, got ${JSON.stringify(v)}`);
        cfg.log.level = v;
        break;
      }
      case 'log.format': {
        const v = str(raw);
        if (v !== 'json' && v !== 'text' && v !== 'auto') throw new ConfigError(key, `expected json|text|auto, got ${JSON.stringify(v)}`);
        cfg.log.format = v;
        break;
      }
      case 'shutdownTimeoutSeconds': {
        const n = Number(raw);
        if (!Number.isFinite(n) || n < 0) throw new ConfigError(key, `expected a number of seconds ≥ 0, got ${JSON.stringify(raw)}`);
        cfg.shutdownTimeoutSeconds = n;
        break;
      }
      case 'policy':
        try {
          cfg.policy = parsePolicy(raw, key);
        } catch (e) {
          if (e instanceof PolicyConfigError) throw new ConfigError(e.key, `${e.message} (in ${source})`);
          throw e;
        }
        break;
      case 'pushHost': {
        const v = str(raw);
        if (!isValidPart('host', v)) throw new ConfigError(key, `invalid host folder name ${JSON.stringify(v)}`);
        cfg.pushHost = v;
        break;
      }
      case 'allowDelete': cfg.allowDelete = bool(raw); break;
      case 'uploadMaxAgeHours': cfg.uploadMaxAgeHours = positive(raw); break;
      case 'auth.anonymousRead': cfg.auth = { ...cfg.auth, anonymousRead: bool(raw) }; break;
      case 'auth.tokenTtlSeconds': cfg.auth = { ...cfg.auth, tokenTtlSeconds: positive(raw) }; break;
      case 'auth.blobUrlTtlSeconds': cfg.auth = { ...cfg.auth, blobUrlTtlSeconds: positive(raw) }; break;
    }
  }
}

function applyUpstreamKey(cfg: Config, key: string, raw: unknown): boolean {
  switch (key) {
    case 'upstream':
      if (typeof raw !== 'string' || raw === '') throw new UpstreamConfigError(key, 'expected the URL of the upstream registry');
      cfg.upstreams = [upstreamFromUrl(raw, key)];
      cfg.routes = [];
      return true;
    case 'upstreamAllowPrivateHosts':
      // Checked and applied at the end (loadConfig), whichever source gave `upstream`.
      cfg.upstreamAllowPrivateHosts = hostList(raw, key);
      return true;
    case 'upstreams': cfg.upstreams = parseUpstreams(raw, key); return true;
    case 'upstreamKey':
      if (typeof raw !== 'string' || raw === '') throw new UpstreamConfigError(key, 'expected the path of an ed25519 private key file');
      cfg.upstreamKey = path.resolve(raw);
      return true;
    case 'routes': cfg.routes = parseRoutes(raw, key); return true;
    case 'offline': {
      const v = typeof raw === 'string' ? raw.toLowerCase() : raw;
      if (v === true || v === 'true' || v === '1' || v === 'yes') cfg.offline = true;
      else if (v === false || v === 'false' || v === '0' || v === 'no') cfg.offline = false;
      else throw new UpstreamConfigError(key, `expected true or false, got ${JSON.stringify(raw)}`);
      return true;
    }
  }
  return false;
}

export interface LoadOptions {
  /** YAML file; also OLLAMA_REGISTRY_CONFIG. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values keyed like the YAML keys ('data', 'listen', 'tls.cert', …); undefined = not given. */
  flags?: Flat;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const cfg = defaults(env);
  const file = opts.file ?? env.OLLAMA_REGISTRY_CONFIG;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(file, `cannot read it: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      // The first line of the yaml library's message; it ends in ':' before a source excerpt.
      throw new ConfigError(file, `not valid YAML: ${(e as Error).message.split('\n')[0]!.replace(/:\s*$/, '')}`);
    }
    if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError(file, 'must be a YAML mapping of settings');
    apply(cfg, flatten(doc ?? {}), file);
    cfg.configFile = path.resolve(file);
  }
  apply(cfg, Object.fromEntries(ENV.filter(([, v]) => env[v] !== undefined && env[v] !== '').map(([k, v]) => [k, env[v]])), 'environment');
  apply(cfg, opts.flags ?? {}, 'command line');
  if (cfg.tls && (!cfg.tls.cert || !cfg.tls.key)) throw new ConfigError('tls', 'give both tls.cert and tls.key (--tls-cert and --tls-key)');
  if (cfg.upstreamAllowPrivateHosts) {
    const extra = cfg.upstreamAllowPrivateHosts;
    cfg.upstreams = cfg.upstreams.map((u) => ({ ...u, allowPrivateHosts: [...new Set([...u.allowPrivateHosts, ...extra])] }));
  }
  try {
    cfg.routes = finishRouting(cfg.upstreams, cfg.routes);
  } catch (e) {
    if (e instanceof UpstreamConfigError) throw new ConfigError(e.key, e.message);
    throw e;
  }
  return cfg;
}
