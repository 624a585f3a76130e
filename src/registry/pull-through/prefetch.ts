// Prefetch: fill the store with a model ahead of time, without ollama. Used by the `pull`
// command and the POST /api/pull endpoint; progress events have ollama's /api/pull shape.
import type { App } from '../../app.js';
import { RegistryError } from '../../errors.js';
import { DEFAULT_HOST, formatName, parseModelName, type ModelName } from '../../names.js';
import type { Upstream } from '../../upstream/client.js';
import { referencedDigests, parseManifest } from '../manifests/manifest-format.js';
import { treeDigests } from '../manifests/manifest-tree.js';
import { MiB } from '../../units.js';

export type PullEvent =
  | { status: string; digest?: string; total?: number; completed?: number; name?: string }
  | { error: string; name?: string };

export interface PrefetchResult {
  name: string;
  manifestDigest: string;
  blobs: number;
  /** Blobs that were already here. */
  present: number;
  /** Bytes that came from upstreams for this pull. */
  fetched: number;
  stale: boolean;
}


/** Upstreams for a name as typed: its host picks the upstream (hf.co/…); the default host routes by namespace. */
export function upstreamsForName(app: App, name: ModelName): Upstream[] {
  const cache = app.cache;
  if (!cache || cache.offline) {
    throw new RegistryError('UNSUPPORTED', cache
      ? 'the registry is in offline mode: nothing can be pulled'
      : 'no upstream is configured: start with --upstream URL or set upstreams in the config file');
  }
  const byHost = cache.upstreamForHost(name.host);
  if (byHost) return [byHost];
  if (name.host.toLowerCase() !== DEFAULT_HOST) {
    throw new RegistryError('NAME_UNKNOWN', `no upstream is configured for host ${name.host} (upstream host folders: ${cache.upstreams.map((u) => u.host).join(', ')})`);
  }
  const ups = cache.upstreamsFor(name.namespace);
  if (!ups.length) throw new RegistryError('NAME_UNKNOWN', `no upstream is routed for namespace ${name.namespace}`);
  return ups;
}

export async function prefetch(app: App, input: string, emit: (e: PullEvent) => void, opts: { blobsAtOnce?: number } = {}): Promise<PrefetchResult> {
  const name = parseModelName(input);
  const ups = upstreamsForName(app, name);
  app.policy.check('pull-through', name.namespace, name.model);
  const cache = app.cache!;
  emit({ status: 'pulling manifest' });
  const a = await cache.manifest(name.namespace, name.model, name.tag, { upstreams: ups, maxAgeSeconds: 0 });
  if (a.cache === 'stale') emit({ status: `no upstream answered, using the cached manifest: ${a.reason ?? ''}` });
  const top = parseManifest(a.manifest.bytes);
  const layers = referencedDigests(top);
  const seen = new Set(layers.map((d) => d.digest));
  const src = cache.blobSource(name.namespace, name.model, ups);
  let present = 0;
  let fetched = 0;
  const queue = [...layers];
  const worker = async () => {
    for (let d = queue.shift(); d; d = queue.shift()) {
      const status = `pulling ${d.digest.slice(7, 19)}`;
      const have = await app.blobs.size(d.digest);
      if (have !== null) {
        present++;
        emit({ status, digest: d.digest, total: have, completed: have });
        continue;
      }
      const fill = await cache.fills.get(d.digest, src);
      if (!fill) {
        present++;
        emit({ status, digest: d.digest, total: d.size, completed: d.size });
        continue;
      }
      // Several lanes per big blob: a long, thin link is used better by parallel ranges.
      fill.parallel(Math.min(16, Math.max(1, Math.floor(fill.size / (64 * MiB)))));
      const before = fill.received;
      const tick = setInterval(() => emit({ status, digest: d.digest, total: fill.size, completed: fill.filled() }), 250);
      try {
        emit({ status, digest: d.digest, total: fill.size, completed: fill.filled() });
        await fill.settled;
      } finally {
        clearInterval(tick);
      }
      fetched += fill.received - before;
      if (fill.error) throw fill.error;
      emit({ status, digest: d.digest, total: fill.size, completed: fill.size });
    }
  };
  // A list's children are manifests fetched as blobs (ollama's manifest list): then their blobs.
  const children = async () => {
    for (const d of await treeDigests(app.driver, top)) {
      if (!seen.has(d.digest)) {
        seen.add(d.digest);
        queue.push(d);
        layers.push(d);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.blobsAtOnce ?? 3) }, worker));
  await children();
  await Promise.all(Array.from({ length: Math.max(1, opts.blobsAtOnce ?? 3) }, worker));
  emit({ status: 'verifying sha256 digest' });
  emit({ status: 'writing manifest' });
  emit({ status: 'success' });
  return { name: formatName(name), manifestDigest: a.manifest.digest, blobs: layers.length, present, fetched, stale: a.cache === 'stale' };
}
