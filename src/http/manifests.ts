import { CACHE_HEADER, UpstreamAnswer } from '../registry/cache.js';
import type { StoredManifest } from '../registry/manifests.js';
import { GATED_BODY, versionGate } from '../registry/gating.js';
import type { Handler } from './context.js';

type ManifestRoute = { kind: 'manifest'; namespace: string; model: string; reference: string };

/** Manifest bytes exactly as stored, whatever the Accept header (ollama and OCI tools alike). */
export const getManifest: Handler<ManifestRoute> = async ({ app, req, res, route }) => {
  let m: StoredManifest;
  const extra: Record<string, string> = {};
  if (app.cache) {
    try {
      const a = await app.cache.manifest(route.namespace, route.model, route.reference, { userAgent: req.headers['user-agent'] });
      m = a.manifest;
      extra[CACHE_HEADER] = a.cache;
    } catch (e) {
      if (!(e instanceof UpstreamAnswer)) throw e;
      // Verbatim: ollama prints this body to the user (e.g. "requires a newer version of Ollama").
      res.writeHead(e.status, { 'Content-Type': e.contentType, 'Content-Length': e.body.length });
      res.end(req.method === 'HEAD' ? undefined : e.body);
      return;
    }
  } else {
    m = await app.manifests.get(route.namespace, route.model, route.reference);
  }
  const requires = await versionGate(app.blobs, m.bytes, req.headers['user-agent']);
  if (requires) {
    // Plain text, as registry.ollama.ai sends it: ollama prints the body after "412: ".
    app.metrics.versionGated.inc();
    res.writeHead(412, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(GATED_BODY), 'X-Ollama-Requires': requires });
    res.end(req.method === 'HEAD' ? undefined : GATED_BODY);
    return;
  }
  if (req.method === 'GET') app.usage.touch(m); // memory only: last pull, for eviction and `ls`
  const etag = `"${m.digest}"`;
  const headers = {
    'Content-Type': m.mediaType,
    'Docker-Content-Digest': m.digest,
    ETag: etag,
    'Last-Modified': new Date(m.mtimeMs).toUTCString(),
    ...extra,
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': m.bytes.length });
  res.end(req.method === 'HEAD' ? undefined : m.bytes);
};
