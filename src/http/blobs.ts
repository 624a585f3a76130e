// Blob reads, shaped by what ollama's downloader needs (protocol §2.3, §3.3):
// HEAD answers directly with the exact size; a GET without Range answers 200 *with* a Location
// header (ollama's probe reads only the headers and hangs up); a ranged GET answers 206.
import type { Handler } from './context.js';
import { blobLocation } from './auth.js';
import { blobUnknown, mountOnHead, reachableThrough } from './blob-access.js';
import { getBlobThroughCache } from './blob-fill.js';
import { parseRange } from './range.js';
import { isClientGone } from './respond.js';

export type BlobRoute = { kind: 'blob'; namespace: string; model: string; digest: string };

export const getBlob: Handler<BlobRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  const { digest } = route;
  // Only through a repository that references it (or that this requester put it into).
  const reachable = (await reachableThrough(app, ctx.principal, digest, route))
    || (req.method === 'HEAD' && (await mountOnHead(app, ctx.principal, digest, route)));
  if (!reachable) throw blobUnknown(app, digest, route);
  const size = await app.blobs.size(digest);
  if (app.cache && size !== null) app.metrics.cacheLookups.inc({ result: 'hit' });
  if (size === null) {
    if (app.cache) return getBlobThroughCache(ctx, getBlob);
    throw blobUnknown(app, digest, route);
  }
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Docker-Content-Digest': digest,
    ETag: `"${digest}"`,
    'Cache-Control': 'public, max-age=31536000, immutable',
  };
  if (req.method === 'HEAD') {
    res.writeHead(200, { ...headers, 'Content-Length': size });
    res.end();
    return;
  }
  const range = parseRange(req.headers.range, size);
  if (range) {
    res.writeHead(206, { ...headers, 'Content-Range': `bytes ${range.start}-${range.end}/${size}`, 'Content-Length': range.end - range.start + 1 });
  } else {
    // The Location is what ollama takes as the URL for its ranged part requests.
    res.writeHead(200, { ...headers, 'Content-Length': size, Location: blobLocation(app, req, route) });
  }
  if (size === 0) {
    res.end();
    return;
  }
  try {
    await app.blobs.copyTo(digest, res, range);
  } catch (e) {
    if (!isClientGone(e, res)) throw e;
  }
};
