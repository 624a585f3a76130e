// One typed configuration: defaults < YAML file < environment < command-line flags, every key
// described once in the settings table (config-schema.ts). Every error names the key it is about
// and where the value came from; `config check` gets all of them at once.
import path from 'node:path';
import * as v from 'valibot';
import { PolicyConfigError, type PolicyRule } from './auth/rules.js';
import { credentialHint, SETTINGS } from './config-schema.js';
import { closest } from './config-values.js';
import { ConfigError, readConfigFile } from './config-file.js';
import type { Limits } from './limits.js';
import { withMirrorUpstreams, type MirrorConfig } from './mirror/config.js';
import { finishRouting, UpstreamConfigError, type RouteConfig, type UpstreamConfig } from './upstream/config.js';

export { defaultDataDir, DEFAULT_PUSH_HOST } from './config-values.js';
export { ConfigError } from './config-file.js';

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
    /** Keep the store in an S3 bucket instead of the data folder (credentials: the AWS SDK's usual chain only). */
    s3?: S3Config;
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

/** An S3 bucket for the store; absent unless storage.s3.bucket is set. */
export interface S3Config {
  bucket: string;
  /** Default: AWS. */
  endpoint?: string;
  /** Default: the SDK's (AWS_REGION), else us-east-1. */
  region?: string;
  /** Key prefix inside the bucket, without a trailing '/' ('' for none). */
  prefix: string;
  /** Path-style URLs (http://host/bucket/key), as Ceph and MinIO usually need. */
  forcePathStyle: boolean;
  /** Answer blob GETs with a redirect to a presigned URL. */
  redirect: boolean;
  /** The endpoint clients reach for presigned URLs, when it differs from `endpoint`. */
  redirectEndpoint?: string;
  redirectTtlSeconds: number;
}

/** A free-space floor: bytes, a percentage of the file system, or both (the smaller applies). */
export interface MinFree { bytes?: number; percent?: number }

/** How deep the file's mappings may nest (the deepest key, storage.s3.x, is 3). */
const MAX_DEPTH = 8;
/** Environment variables of ours that are not settings. */
const OTHER_ENV = new Set(['OLLAMA_REGISTRY_CONFIG']);

type Source = string;
/** A value that was set, after its schema: what `config check` prints. */
export interface SetValue { key: string; value: unknown; source: Source }

export function defaults(env: NodeJS.ProcessEnv = process.env): Config {
  // The containers; every field in them comes from a setting's default.
  const cfg = { listen: {}, log: {}, storage: {}, uploads: {}, auth: {}, limits: {} } as unknown as Config;
  for (const s of SETTINGS) {
    if (s.default === undefined) continue;
    const raw = typeof s.default === 'function' ? (s.default as (e: NodeJS.ProcessEnv) => unknown)(env) : s.default;
    s.set(cfg, v.parse(s.schema, raw));
  }
  return cfg;
}

const BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));
const KEYS = [...BY_KEY.keys()];
const MAX_SUGGESTIONS = 100;
const BY_ENV = new Map(SETTINGS.filter((s) => s.env).map((s) => [s.env!, s]));
/** Keys that are sections (storage, storage.s3, limits…): a value there must be a mapping. */
const SECTIONS = new Set(SETTINGS.flatMap((s) => s.key.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'))));

/** The file's mappings as dotted keys; lists and scalars are values. Cyclic or deep nesting is an error. */
function flatten(obj: unknown, prefix: string, out: Array<[string, unknown]>, errors: ConfigError[], source: Source, depth = 0): void {
  if (obj && typeof obj === 'object' && !Array.isArray(obj) && !Buffer.isBuffer(obj) && !(obj instanceof Uint8Array)) {
    if (depth >= MAX_DEPTH) {
      errors.push(new ConfigError(prefix, `nested too deep (in ${source})`));
      return;
    }
    for (const [k, val] of Object.entries(obj)) flatten(val, prefix ? `${prefix}.${k}` : k, out, errors, source, depth + 1);
  } else if (prefix) out.push([prefix, obj]);
}

/** Errors thrown with their own (longer) key by the upstream and policy parsers. */
function keyed(e: unknown): { key: string; message: string } | undefined {
  return e instanceof UpstreamConfigError || e instanceof PolicyConfigError ? { key: e.key, message: e.message } : undefined;
}

class Loader {
  readonly errors: ConfigError[] = [];
  private unknowns = 0;
  readonly set = new Map<string, SetValue>();

  constructor(readonly cfg: Config) {}

  apply(entries: Array<[string, unknown]>, source: Source): void {
    for (const [key, raw] of entries) {
      if (raw === undefined) continue;
      const s = BY_KEY.get(key);
      if (!s) {
        this.errors.push(new ConfigError(key, this.unknown(key, source)));
        continue;
      }
      try {
        const r = v.safeParse(s.schema, raw);
        if (!r.success) {
          this.errors.push(new ConfigError(key, `${r.issues[0].message} (in ${source})`));
          continue;
        }
        s.set(this.cfg, r.output);
        this.set.set(key, { key, value: r.output, source });
      } catch (e) {
        const k = keyed(e);
        if (!k) throw e;
        this.errors.push(new ConfigError(k.key, `${k.message} (in ${source})`));
      }
    }
  }

  private unknown(key: string, source: Source): string {
    const hint = credentialHint(key);
    if (hint) return `${hint} (in ${source})`;
    if (SECTIONS.has(key)) return `expected a mapping of settings such as ${SETTINGS.find((s) => s.key.startsWith(`${key}.`))!.key} (in ${source})`;
    // Suggestions for the first few only: a file of thousands of wrong keys is no typo.
    const near = ++this.unknowns <= MAX_SUGGESTIONS ? closest(key, KEYS) : undefined;
    return `unknown setting (in ${source})${near ? `; did you mean ${near}?` : ''}`;
  }

  /** OLLAMA_REGISTRY_* variables: the known ones as settings, a misspelt one is an error. */
  applyEnv(env: NodeJS.ProcessEnv): void {
    const entries: Array<[string, unknown]> = [];
    for (const [name, value] of Object.entries(env)) {
      if (!name.startsWith('OLLAMA_REGISTRY_') || OTHER_ENV.has(name) || value === undefined || value === '') continue;
      const s = BY_ENV.get(name);
      if (s) entries.push([s.key, value]);
      else {
        const near = closest(name, [...BY_ENV.keys()]);
        this.errors.push(new ConfigError(name, `unknown environment variable${near ? `; did you mean ${near}?` : ''}`));
      }
    }
    // In table order, so the result does not depend on the environment's order.
    entries.sort((a, b) => SETTINGS.indexOf(BY_KEY.get(a[0])!) - SETTINGS.indexOf(BY_KEY.get(b[0])!));
    this.apply(entries, 'environment');
  }

  /** Rules between settings, once every source is in. */
  finish(): void {
    const cfg = this.cfg;
    if (cfg.tls && (!cfg.tls.cert || !cfg.tls.key)) this.errors.push(new ConfigError('tls', 'give both tls.cert and tls.key (--tls-cert and --tls-key)'));
    if (this.set.get('mirror.enabled')?.value === false) delete cfg.mirror;
    if (cfg.storage.s3 && !cfg.storage.s3.bucket) this.errors.push(new ConfigError('storage.s3.bucket', 'required when any storage.s3 setting is given'));
    if (cfg.upstreamAllowPrivateHosts) {
      const extra = cfg.upstreamAllowPrivateHosts;
      cfg.upstreams = cfg.upstreams.map((u) => ({ ...u, allowPrivateHosts: [...new Set([...u.allowPrivateHosts, ...extra])] }));
    }
    cfg.upstreams = withMirrorUpstreams(cfg.mirror, cfg.upstreams);
    try {
      cfg.routes = finishRouting(cfg.upstreams, cfg.routes);
    } catch (e) {
      const k = keyed(e);
      if (!k) throw e;
      this.errors.push(new ConfigError(k.key, k.message));
    }
  }
}

export interface LoadOptions {
  /** YAML file; also OLLAMA_REGISTRY_CONFIG. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values keyed like the YAML keys ('data', 'listen', 'tls.cert', …); undefined = not given. */
  flags?: Record<string, unknown>;
}

export interface CheckResult {
  config: Config;
  /** Every problem found, in the order of the sources (file, environment, flags). */
  errors: ConfigError[];
  /** What was set (not defaulted), with the source that won. */
  set: SetValue[];
}

/** Load every source and collect every error instead of stopping at the first. */
export function checkConfig(opts: LoadOptions = {}): CheckResult {
  const env = opts.env ?? process.env;
  const loader = new Loader(defaults(env));
  const file = opts.file ?? env.OLLAMA_REGISTRY_CONFIG;
  if (file) {
    try {
      const entries: Array<[string, unknown]> = [];
      flatten(readConfigFile(file), '', entries, loader.errors, file);
      loader.apply(entries, file);
      loader.cfg.configFile = path.resolve(file);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      loader.errors.push(e);
    }
  }
  loader.applyEnv(env);
  loader.apply(Object.entries(opts.flags ?? {}), 'command line');
  loader.finish();
  return { config: loader.cfg, errors: loader.errors, set: [...loader.set.values()] };
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const r = checkConfig(opts);
  if (r.errors.length > 0) throw r.errors[0];
  return r.config;
}

