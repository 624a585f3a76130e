// What `ls` shows, also the input of an incremental `export --exclude-from`.
import type { App } from '../../app.js';
import { ManifestIndex } from './manifest-index.js';
import { Pins } from '../housekeeping/pins.js';
import { cachedHostRecord, isCachedHost } from '../housekeeping/sources.js';

export interface ModelRow {
  name: string;
  host: string;
  namespace: string;
  model: string;
  tag: string;
  /** sha256 of the manifest. */
  digest: string;
  /** Sum of its blobs. */
  size: number;
  source: 'cache' | 'local';
  pinned: boolean;
  /** ISO time of the last pull through this registry, or null. */
  lastPulled: string | null;
  modified: string;
  blobs: Array<{ digest: string; size: number; mediaType?: string }>;
  error?: string;
}

export interface Listing {
  models: ModelRow[];
  /** Bytes of the distinct blobs the listed models use (shared blobs once). */
  totalSize: number;
}

export async function listModels(app: App): Promise<Listing> {
  const index = new ManifestIndex(app.driver);
  await index.refresh();
  const pins = await new Pins(app.driver).list();
  const recorded = await cachedHostRecord(app.driver).list();
  const pulls = await app.usage.all();
  const seen = new Map<string, number>();
  const models: ModelRow[] = [];
  for (const e of index.list()) {
    if (!e.ref) continue; // not a valid ollama name: never served (verify reports it)
    for (const b of e.blobs) seen.set(b.digest, b.size);
    const pulled = pulls.get(e.name);
    models.push({
      name: e.name, ...e.ref, digest: e.digest, size: e.size, source: isCachedHost(app.config, e.ref.host, recorded) ? 'cache' : 'local', pinned: pins.has(e.name),
      lastPulled: pulled ? new Date(pulled).toISOString() : null, modified: new Date(e.mtimeMs).toISOString(),
      blobs: e.blobs.map((b) => ({ digest: b.digest, size: b.size, mediaType: b.mediaType })),
      ...(e.error ? { error: e.error } : {}),
    });
  }
  return { models, totalSize: [...seen.values()].reduce((a, b) => a + b, 0) };
}
