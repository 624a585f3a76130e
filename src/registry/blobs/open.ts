// One way to read a blob, wherever its bytes are: the store, or (through the cache) a fill that
// is receiving them from an upstream. A reader learns the size and where the bytes come from,
// and gets them the same way from both; a store that hands out signed URLs answers a redirect.
import type { Writable } from 'node:stream';
import type { App } from '../../app.js';
import { RegistryError } from '../../errors.js';
import type { ByteRange } from '../../storage/driver.js';
import { blobKey } from '../../storage/layout.js';
import type { Upstream } from '../../upstream/client.js';
import type { ReadableFill } from '../pull-through/fill-reader.js';
import type { RepoName } from './blob-access.js';

export interface BlobName extends RepoName {
  digest: string;
}

/** Bytes of a blob (or a range of it) ready to be written: the first byte is readable. */
export interface BlobStream {
  /** Write the bytes into `out` and end it. */
  copyTo(out: Writable): Promise<void>;
}

export type OpenBlob =
  | {
    size: number;
    /** `store`: stored and verified; `fill`: arriving from an upstream now. */
    source: 'store' | 'fill';
    /** The bytes of `range` (all without one); a fill that fails before that first byte throws its error here. */
    stream(range?: ByteRange): Promise<BlobStream>;
  }
  | { redirect: string };

export interface OpenOptions {
  /** Only the size is wanted (HEAD): a missing blob's size is asked upstream, no fill starts. */
  sizeOnly?: boolean;
  /** The upstreams that may fill it (a site's own); default: routed by the namespace. */
  upstreams?: Upstream[];
  /** The registry's origin as the client used it: a stored blob may then be answered with a redirect (redirect mode). */
  registryUrl?: string;
}

/**
 * A blob by digest, read through a repository (whether the requester may read it there is
 * decided before). Null when it is not here and cannot be filled; without an upstream for the
 * namespace through the cache, BLOB_UNKNOWN saying why.
 */
export async function openBlob(app: App, name: BlobName, opts: OpenOptions = {}): Promise<OpenBlob | null> {
  const size = await app.blobs.size(name.digest);
  if (size !== null) {
    if (app.cache) app.metrics.cacheLookups.inc({ result: 'hit' });
    // Only stored (verified) bytes are redirected to; HEAD is always answered here.
    const to = opts.registryUrl && !opts.sizeOnly ? await app.driver.redirectUrl?.(blobKey(name.digest), opts.registryUrl) : null;
    if (to) return { redirect: to };
    return stored(app, name.digest, size);
  }
  const cache = app.cache;
  if (!cache) return null;
  const src = cache.blobSource(name.namespace, name.model, opts.upstreams);
  if (src.upstreams.length === 0) {
    const why = cache.offline ? 'and the registry is in offline mode' : `and no upstream is configured for namespace ${name.namespace}`;
    throw new RegistryError('BLOB_UNKNOWN', `blob unknown: ${name.digest} is not in this registry ${why}`);
  }
  app.policy.check('pull-through', name.namespace, name.model);
  app.metrics.cacheLookups.inc({ result: 'miss' });
  if (opts.sizeOnly) {
    const known = await cache.fills.size(name.digest, src);
    return { size: known.size, source: 'fill', stream: () => Promise.reject(new Error('opened for its size only')) };
  }
  const fill = await cache.fills.get(name.digest, src);
  if (!fill) {
    // Published meanwhile.
    const now = await app.blobs.size(name.digest);
    return now === null ? null : stored(app, name.digest, now);
  }
  return {
    size: fill.size,
    source: 'fill',
    stream: async (range) => {
      const start = range?.start ?? 0;
      const end = range?.end ?? fill.size - 1;
      // A fill that fails before its first byte (the upstream refused, redirected somewhere not
      // followed, is down) is answered with its error, not with a cut connection.
      if (fill.size > 0) await firstByte(fill, start);
      return { copyTo: (out) => fill.copyTo(out, start, end) };
    },
  };
}

function stored(app: App, digest: string, size: number): OpenBlob {
  return { size, source: 'store', stream: async (range) => ({ copyTo: (out) => app.blobs.copyTo(digest, out, range) }) };
}

/** Wait until byte `pos` of the fill is readable, or the fill ended (its error is thrown). */
async function firstByte(fill: ReadableFill, pos: number): Promise<void> {
  // The fill's upstream requests have timeouts: it gets a byte or an error.
  while (!fill.error && !fill.verified && fill.readableEnd(pos) <= pos) {
    const changed = fill.changed();
    fill.want(pos);
    await changed;
  }
  if (fill.error) throw fill.error;
}
