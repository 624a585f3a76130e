// Pull-through: manifests from upstreams with a freshness time per tag and stale-if-error,
// and the routing that tells which upstreams a namespace uses. Blobs go through fills.ts.
//
// Lookup rule for a tag: content in a host folder that no upstream caches into (pushed or
// imported under another host) is served as it is; otherwise the cached copy in the first
// routed upstream's host folder is served while fresh, re-checked upstream when older than the
// upstream's freshness, and served stale (saying so) when every routed upstream fails.
import { Coalesce } from '../../coalesce.js';
import type { Config } from '../../config.js';
import { RegistryError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Policy } from '../../auth/rules.js';
import { isDigest } from '../../names.js';
import type { Driver } from '../../storage/driver.js';
import { routeFor } from '../../upstream/config.js';
import { Upstream, UpstreamError } from '../../upstream/client.js';
import { printable } from '../../upstream/common.js';
import { keySourceFor, type OwnKey } from '../../upstream/key.js';
import type { BlobStore } from '../blobs/blobs.js';
import type { DiskSpace } from '../housekeeping/disk-space.js';
import { Fills, upstreamToRegistryError, type FillSource } from './fills.js';
import { sha256Digest } from '../blobs/hashing.js';
import { manifestContentType, parseManifest, referencedDigests } from '../manifests/manifest-format.js';
import type { ManifestStore, StoredManifest } from '../manifests/manifests.js';
import { cachedHostRecord } from '../housekeeping/sources.js';

/** How a manifest answer was obtained; sent as the X-Ollama-Registry-Cache header. */
export type CacheState = 'hit' | 'miss' | 'refreshed' | 'revalidated' | 'stale' | 'local';

export const CACHE_HEADER = 'X-Ollama-Registry-Cache';

export interface ManifestAnswer {
  manifest: StoredManifest;
  cache: CacheState;
  /** Why a stale copy was served. */
  reason?: string;
}

/** An upstream answer that must reach the client verbatim (e.g. 412 "requires a newer version of Ollama"). */
export class UpstreamAnswer extends Error {
  readonly contentType = 'text/plain; charset=utf-8';
  constructor(readonly status: number, readonly body: Buffer) {
    super(`upstream answered ${status}`);
  }
}

export interface ManifestOptions {
  userAgent?: string;
  /** The upstreams to fill from (default: routed by the namespace). */
  upstreams?: Upstream[];
  maxAgeSeconds?: number;
  /** Answer from this host folder only (a site's, e.g. a mirror's registry.ollama.ai). */
  host?: string;
}

export class PullThrough {
  readonly upstreams: Upstream[];
  readonly fills: Fills;
  private byName = new Map<string, Upstream>();
  private inflight = new Coalesce<string, ManifestAnswer>();
  private readonly recorded = new Set<string>();

  constructor(
    private readonly config: Config,
    private readonly deps: { driver: Driver; blobs: BlobStore; manifests: ManifestStore; log: Logger; metrics?: Metrics; policy?: Policy; space?: DiskSpace; scratch: string },
  ) {
    const onCreate = (k: OwnKey) => deps.log.info({ key: k.line, fingerprint: k.fingerprint, file: k.file },
      "made the registry's own key for signing in to upstreams; register it there to pull what needs sign-in");
    this.upstreams = config.upstreams.map((u) => new Upstream(u, (reason) => deps.metrics?.upstreamErrors.inc({ upstream: u.name, reason }), { ...keySourceFor(deps.driver, config, u), onCreate }));
    for (const u of this.upstreams) this.byName.set(u.name, u);
    this.fills = new Fills(deps, config.storage.leaseSeconds * 1000);
  }

  get offline(): boolean {
    return this.config.offline;
  }

  /** Routed upstreams of a namespace, in order ([] in offline mode or when none is routed). */
  upstreamsFor(namespace: string): Upstream[] {
    return routeFor(this.config.routes, namespace).map((n) => this.byName.get(n)!).filter(Boolean);
  }

  /** The upstream whose host folder is `host` (for names typed with a host, e.g. hf.co/…). */
  upstreamForHost(host: string): Upstream | undefined {
    return this.upstreams.find((u) => u.host.toLowerCase() === host.toLowerCase());
  }

  blobSource(namespace: string, model: string, upstreams = this.upstreamsFor(namespace)): FillSource {
    return { upstreams: this.offline ? [] : upstreams, namespace, model };
  }

  private isCacheHost(host: string): boolean {
    if (host.toLowerCase() === this.config.pushHost.toLowerCase()) return false;
    return this.upstreams.some((u) => u.host.toLowerCase() === host.toLowerCase());
  }

  async manifest(namespace: string, model: string, reference: string, opts: ManifestOptions = {}): Promise<ManifestAnswer> {
    const a = await this.lookup(namespace, model, reference, opts);
    this.deps.metrics?.cacheLookups.inc({ result: a.cache === 'miss' || a.cache === 'refreshed' || a.cache === 'revalidated' ? 'miss' : 'hit' });
    if (a.cache !== 'local') {
      try {
        this.fills.learnSizes(referencedDigests(parseManifest(a.manifest.bytes)));
      } catch {
        /* served verbatim all the same */
      }
    }
    return a;
  }

  private async lookup(namespace: string, model: string, reference: string, opts: ManifestOptions): Promise<ManifestAnswer> {
    const ups = opts.upstreams ?? this.upstreamsFor(namespace);
    const store = this.deps.manifests;
    if (ups.length === 0 && !this.offline) return { manifest: await store.get(namespace, model, reference, opts.host), cache: 'local' };
    if (isDigest(reference)) {
      const local = await store.find(namespace, model, reference, opts.host);
      if (local) return { manifest: local, cache: 'hit' };
      this.deps.policy?.check('pull-through', namespace, model);
      return this.singleflight(`${opts.host ?? ''}/${namespace}/${model}@${reference}`, () => this.fetch(ups, namespace, model, reference, null, opts.userAgent));
    }
    // Folders of pushed and imported models come first, unless the answer is one host folder's.
    for (const host of opts.host === undefined ? await store.hosts() : []) {
      if (this.isCacheHost(host)) continue;
      const local = await store.findIn(host, namespace, model, reference);
      if (local) return { manifest: local, cache: 'local' };
    }
    let cached: StoredManifest | null = null;
    let cachedBy: Upstream | undefined;
    for (const up of ups.length ? ups : this.upstreams) {
      if (opts.host !== undefined && up.host.toLowerCase() !== opts.host.toLowerCase()) continue;
      cached = await store.findIn(up.host, namespace, model, reference);
      if (cached) {
        cachedBy = up;
        break;
      }
    }
    if (this.offline || ups.length === 0) {
      if (cached) return { manifest: cached, cache: 'stale', reason: 'offline mode' };
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${namespace}/${model}:${reference} is not cached here and the registry is in offline mode`);
    }
    const maxAge = (opts.maxAgeSeconds ?? cachedBy?.config.freshnessSeconds ?? 0) * 1000;
    if (cached && Date.now() - cached.mtimeMs < maxAge) return { manifest: cached, cache: 'hit' };
    if (this.deps.policy && !this.deps.policy.decide('pull-through', namespace, model).allowed) {
      if (cached) return { manifest: cached, cache: 'stale', reason: 'pull-through refused by policy' };
      this.deps.policy.check('pull-through', namespace, model);
    }
    const key = `${opts.host ?? ''}/${namespace}/${model}:${reference}`.toLowerCase() + `\n${opts.userAgent ?? ''}`;
    return this.singleflight(key, () => this.fetch(ups, namespace, model, reference, cached, opts.userAgent));
  }

  private singleflight(key: string, fn: () => Promise<ManifestAnswer>): Promise<ManifestAnswer> {
    return this.inflight.run(key, fn);
  }

  private async fetch(ups: Upstream[], namespace: string, model: string, reference: string, cached: StoredManifest | null, userAgent?: string): Promise<ManifestAnswer> {
    const errors: UpstreamError[] = [];
    for (const up of ups) {
      try {
        const { bytes } = await up.manifest(namespace, model, reference, userAgent);
        try {
          parseManifest(bytes);
        } catch (e) {
          // JSON.parse quotes the bytes it chokes on: keep the upstream's bytes out of the reason.
          const why = /not valid JSON/.test((e as Error).message) ? 'not JSON' : printable((e as Error).message, 120);
          throw new UpstreamError(up.name, 'invalid', `${up.describe()} answered something that is not a manifest for ${namespace}/${model}:${reference} (${why})`);
        }
        if (isDigest(reference)) {
          if (sha256Digest(bytes) !== reference) throw new UpstreamError(up.name, 'invalid', `${up.describe()} answered a manifest whose digest is not ${reference}`);
          // Kept as an untagged manifest of the upstream's host folder: an index's children stay
          // readable offline, and gc keeps them while the cached index names them.
          await this.deps.manifests.putUntagged(up.host, namespace, model, bytes);
          return { manifest: { host: up.host, namespace, model, tag: reference, untagged: true, bytes, digest: reference, mediaType: manifestContentType(bytes), mtimeMs: Date.now() }, cache: 'miss' };
        }
        const sameHost = cached && cached.host.toLowerCase() === up.host.toLowerCase();
        const ref = sameHost ? { host: cached!.host, namespace: cached!.namespace, model: cached!.model, tag: cached!.tag } : { host: up.host, namespace, model, tag: reference };
        await this.deps.manifests.put(ref, bytes);
        await this.recordCached(ref.host);
        const stored = await this.deps.manifests.read(ref);
        if (!stored) throw new Error(`manifest ${ref.namespace}/${ref.model}:${ref.tag} vanished right after it was stored`);
        const state: CacheState = !cached ? 'miss' : cached.bytes.equals(bytes) ? 'revalidated' : 'refreshed';
        if (state !== 'revalidated') this.deps.log.info({ upstream: up.name, name: `${namespace}/${model}:${reference}`, digest: stored.digest, state }, 'manifest cached from upstream');
        return { manifest: stored, cache: state };
      } catch (e) {
        if (!(e instanceof UpstreamError)) throw e;
        // 412: the upstream gates this model by client version; the user must see its words,
        // as plain text whatever type the upstream gave them (an HTML body must not run here).
        if (e.extra.status === 412 && e.extra.body) throw new UpstreamAnswer(412, e.extra.body);
        errors.push(e);
      }
    }
    const reason = errors.map((e) => e.message).join('; ');
    if (cached) {
      this.deps.log.warn({ name: `${namespace}/${model}:${reference}`, reason }, 'serving a stale manifest: no upstream could be reached');
      return { manifest: cached, cache: 'stale', reason };
    }
    if (errors.every((e) => e.kind === 'not-found')) {
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${namespace}/${model}:${reference} is neither here nor on ${ups.map((u) => u.describe()).join(', ')}`);
    }
    const worst = errors.find((e) => e.kind !== 'not-found')!;
    const mapped = upstreamToRegistryError(worst, 'manifest') as RegistryError;
    throw new RegistryError(mapped.code, `cannot get ${namespace}/${model}:${reference}: ${reason}`);
  }

  /**
   * Note in the data folder that a host folder holds cached copies (see sources.ts), once per
   * process and host. Not recording only keeps the model from eviction, so a failure is a warning.
   */
  private async recordCached(host: string): Promise<void> {
    const h = host.toLowerCase();
    if (this.recorded.has(h)) return;
    try {
      await cachedHostRecord(this.deps.driver).set(h, true);
      this.recorded.add(h);
    } catch (e) {
      this.deps.log.warn({ host, err: (e as Error).message }, 'could not record the host folder as a cache');
    }
  }

  /** Resume the fills a previous run left (in the background). */
  async resumeFills(): Promise<number> {
    if (this.offline) return 0;
    const pending = await this.fills.pending();
    for (const p of pending) {
      const src = this.blobSource(p.namespace, p.model);
      this.fills.get(p.digest, src).catch((e) => this.deps.log.warn({ digest: p.digest, err: (e as Error).message }, 'could not resume a fill'));
    }
    return pending.length;
  }

  async close(): Promise<void> {
    await this.fills.stop();
    await Promise.all(this.upstreams.map((u) => u.close().catch(() => {})));
  }
}
