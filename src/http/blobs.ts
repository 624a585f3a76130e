// Blob reads, shaped by what ollama's downloader needs (protocol §2.3, §3.3):
// HEAD answers directly with the exact size; a GET without Range answers 200 *with* a Location
// header (ollama's probe reads only the headers and hangs up); a ranged GET answers 206.
import { RegistryError } from '../errors.js';
import { origin, type Ctx, type Handler } from './context.js';
import { blobLocation, challenge, needOf } from './auth.js';
import { blobUnknown, mountOnHead, reachableThrough } from './blob-access.js';
import { openBlob } from '../registry/blobs/open.js';
import { CACHE_HEADER } from '../registry/pull-through/cache.js';
import { setBytesSource } from '../metrics.js';
import { siteUpstreams } from './sites.js';
import { parseRange } from './range.js';
import { ManifestIndex } from '../registry/manifests/manifest-index.js';
import { deletingOff } from './manifests.js';
import { isClientGone } from './respond.js';

export type BlobRoute = { kind: 'blob'; namespace: string; model: string; digest: string };

/**
 * A blob this requester cannot reach here. Sent without credentials to a registry where someone
 * could have pushed it, the answer is a 401 challenge, whether the blob exists or not (so it
 * confirms nothing): OCI clients send credentials only after one, and then reach the blobs they
 * uploaded themselves. Otherwise 404, the same for hidden and missing blobs.
 */
function hiddenOrUnknown(ctx: Ctx<BlobRoute>): RegistryError {
  const { app, req, route } = ctx;
  if (!req.headers.authorization && !ctx.url.searchParams.has('sig') && !app.auth.store.empty()) {
    return challenge(req, needOf(route, req.method ?? 'GET'), `blob unknown: ${route.digest} is not in ${route.namespace}/${route.model} for anonymous readers; sign in to read blobs you pushed`);
  }
  return blobUnknown(app, route.digest, route);
}

export const getBlob: Handler<BlobRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  const { digest } = route;
  // Only through a repository that references it (or that this requester put it into).
  const reachable = (await reachableThrough(app, ctx.principal, digest, route))
    || (req.method === 'HEAD' && (await mountOnHead(app, ctx.principal, digest, route)));
  if (!reachable) throw hiddenOrUnknown(ctx);
  const blob = await openBlob(app, route, { sizeOnly: req.method === 'HEAD', upstreams: siteUpstreams(ctx.site), registryUrl: origin(req) });
  if (!blob) throw blobUnknown(app, digest, route);
  if ('redirect' in blob) {
    res.writeHead(307, { Location: blob.redirect, 'Content-Length': 0 });
    res.end();
    return;
  }
  const { size } = blob;
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Docker-Content-Digest': digest,
    ETag: `"${digest}"`,
    // Stored bytes never change; bytes still arriving say so instead.
    ...(blob.source === 'store' ? { 'Cache-Control': 'public, max-age=31536000, immutable' } : { [CACHE_HEADER]: req.method === 'HEAD' ? 'miss' : 'filling' }),
  };
  if (req.method === 'HEAD') {
    res.writeHead(200, { ...headers, 'Content-Length': size });
    res.end();
    return;
  }
  const range = parseRange(req.headers.range, size);
  const bytes = await blob.stream(range);
  if (blob.source === 'fill') setBytesSource(res, 'upstream');
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
    await bytes.copyTo(res);
  } catch (e) {
    if (!isClientGone(e, res)) throw e;
  }
};

/**
 * DELETE of a blob (OCI), when allowDelete is on and the requester may delete in the repository.
 * Blobs are shared by every repository and host folder here, so one that any manifest still
 * needs is refused: deleting it would break models the requester may not even see.
 */
export const deleteBlob: Handler<BlobRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  if (!app.config.allowDelete) throw deletingOff('GET, HEAD');
  // Only through a repository that can reach it: a blob another repository's push uploaded is not this one's to delete.
  if (!(await reachableThrough(app, ctx.principal, route.digest, route)) || (await app.blobs.size(route.digest)) === null) throw blobUnknown(app, route.digest, route);
  const index = new ManifestIndex(app.driver);
  await index.refresh();
  if (index.has(route.digest)) {
    throw new RegistryError('DENIED', `blob ${route.digest} is still used by a manifest; delete the manifests that use it (gc then removes the blob)`);
  }
  await app.blobs.delete(route.digest);
  app.log.info({ audit: 'blob-deleted', who: ctx.principal?.label, name: `${route.namespace}/${route.model}`, digest: route.digest, ip: req.socket.remoteAddress }, 'blob-deleted');
  res.writeHead(202, { 'Content-Length': 0 });
  res.end();
};
