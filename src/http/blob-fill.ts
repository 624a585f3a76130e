// Blob reads of a blob that is not here yet: answered from the shared fill as its bytes arrive
// from the upstream (registry/pull-through/fills.ts). Same answers as the stored-blob path (blobs.ts).
import { RegistryError } from '../errors.js';
import { setBytesSource } from '../metrics.js';
import type { BlobRoute } from './blobs.js';
import { blobLocation } from './auth.js';
import type { Ctx, Handler } from './context.js';
import { parseRange } from './range.js';
import { isClientGone } from './respond.js';
import type { ReadableFill } from '../registry/pull-through/fill-reader.js';

export async function getBlobThroughCache(ctx: Ctx<BlobRoute>, stored: Handler<BlobRoute>): Promise<void> {
  const { app, req, res, route } = ctx;
  const cache = app.cache!;
  const src = cache.blobSource(route.namespace, route.model);
  if (src.upstreams.length === 0) {
    const why = cache.offline ? 'and the registry is in offline mode' : `and no upstream is configured for namespace ${route.namespace}`;
    throw new RegistryError('BLOB_UNKNOWN', `blob unknown: ${route.digest} is not in this registry ${why}`);
  }
  app.policy.check('pull-through', route.namespace, route.model);
  app.metrics.cacheLookups.inc({ result: 'miss' });
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Docker-Content-Digest': route.digest,
    ETag: `"${route.digest}"`,
  };
  if (req.method === 'HEAD') {
    // Only the size: no fill starts, no body crosses the link.
    const { size } = await cache.fills.size(route.digest, src);
    res.writeHead(200, { ...headers, 'Content-Length': size, 'X-Ollama-Registry-Cache': 'miss' });
    res.end();
    return;
  }
  const fill = await cache.fills.get(route.digest, src);
  if (!fill) return stored(ctx); // published meanwhile
  setBytesSource(res, 'upstream');
  const size = fill.size;
  const range = parseRange(req.headers.range, size);
  // A fill that fails before its first byte (the upstream refused, redirected somewhere not
  // followed, is down) is answered with its error, not with a cut connection.
  if (size > 0) await firstByte(fill, range?.start ?? 0);
  const h = { ...headers, 'X-Ollama-Registry-Cache': 'filling' };
  if (range) {
    res.writeHead(206, { ...h, 'Content-Range': `bytes ${range.start}-${range.end}/${size}`, 'Content-Length': range.end - range.start + 1 });
  } else {
    res.writeHead(200, { ...h, 'Content-Length': size, Location: blobLocation(app, req, route) });
  }
  if (size === 0) {
    res.end();
    return;
  }
  try {
    await fill.copyTo(res, range?.start ?? 0, range?.end ?? size - 1);
  } catch (e) {
    if (!isClientGone(e, res)) throw e;
  }
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
