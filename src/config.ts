// One typed configuration: defaults < YAML file < environment < command-line flags.
// Every error names the key it is about.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_HOST, isValidPart } from './names.js';
import { finishRouting, parseRoutes, parseUpstreams, upstreamFromUrl, UpstreamConfigError, type RouteConfig, type UpstreamConfig } from './upstream/config.js';
import { parsePolicy, PolicyConfigError, type PolicyRule } from './registry/policy.js';
import { parseDuration, parseSize } from './units.js';
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
  };
  /** Host folder that pushed models are stored under; searched before every other host folder. */
  pushHost: string;
  /** Whether DELETE of tags and manifests is allowed (to principals with the delete right). */
  allowDelete: boolean;
  /** Push sessions untouched for this long are removed. */
  uploadMaxAgeHours: number;
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
    storage: { maxSize: 0, gcIntervalSeconds: 0, gcGraceSeconds: 3600, cachedHosts: [] },
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
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
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
  ['upstreams', ''],
  ['upstreamKey', 'OLLAMA_REGISTRY_UPSTREAM_KEY'],
  ['routes', ''],
  ['offline', 'OLLAMA_REGISTRY_OFFLINE'],
  ['policy', ''],
  ['storage.maxSize', 'OLLAMA_REGISTRY_MAX_SIZE'],
  ['storage.gcInterval', 'OLLAMA_REGISTRY_GC_INTERVAL'],
  ['storage.gcGrace', 'OLLAMA_REGISTRY_GC_GRACE'],
  ['storage.cachedHosts', 'OLLAMA_REGISTRY_CACHED_HOSTS'],
  ['pushHost', 'OLLAMA_REGISTRY_PUSH_HOST'],
  ['allowDelete', 'OLLAMA_REGISTRY_ALLOW_DELETE'],
  ['uploadMaxAgeHours', 'OLLAMA_REGISTRY_UPLOAD_MAX_AGE_HOURS'],
  ['auth.anonymousRead', 'OLLAMA_REGISTRY_ANONYMOUS_READ'],
  ['auth.tokenTtlSeconds', 'OLLAMA_REGISTRY_TOKEN_TTL'],
  ['auth.blobUrlTtlSeconds', 'OLLAMA_REGISTRY_BLOB_URL_TTL'],
];

type Flat = Record<string, unknown>;

function flatten(obj: unknown, prefix = '', out: Flat = {}): Flat {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = obj;
  return out;
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
    if (!known.has(key)) throw new ConfigError(key, `unknown setting (in ${source})`);
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
      case 'storage.maxSize': {
        const n = parseSize(raw);
        if (n === null) throw new ConfigError(key, `expected a size such as 500GB, 1.5TiB or a number of bytes, got ${JSON.stringify(raw)} (in ${source})`);
        cfg.storage.maxSize = n;
        break;
      }
      case 'storage.gcInterval':
      case 'storage.gcGrace': {
        const n = parseDuration(raw);
        if (n === null) throw new ConfigError(key, `expected a duration such as 30m, 6h, 1d or a number of seconds, got ${JSON.stringify(raw)} (in ${source})`);
        if (key === 'storage.gcInterval') cfg.storage.gcIntervalSeconds = n;
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
      throw new ConfigError('config', `cannot read ${file}: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError('config', `${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError('config', `${file} must be a YAML mapping`);
    apply(cfg, flatten(doc ?? {}), file);
    cfg.configFile = path.resolve(file);
  }
  apply(cfg, Object.fromEntries(ENV.filter(([, v]) => env[v] !== undefined && env[v] !== '').map(([k, v]) => [k, env[v]])), 'environment');
  apply(cfg, opts.flags ?? {}, 'command line');
  if (cfg.tls && (!cfg.tls.cert || !cfg.tls.key)) throw new ConfigError('tls', 'give both tls.cert and tls.key (--tls-cert and --tls-key)');
  try {
    cfg.routes = finishRouting(cfg.upstreams, cfg.routes);
  } catch (e) {
    if (e instanceof UpstreamConfigError) throw new ConfigError(e.key, e.message);
    throw e;
  }
  return cfg;
}
