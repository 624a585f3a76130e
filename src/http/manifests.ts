import { EVERYONE } from '../registry/blob-access.js';
import { CACHE_HEADER, UpstreamAnswer } from '../registry/cache.js';
import type { StoredManifest } from '../registry/manifests.js';
import { GATED_BODY, versionGate } from '../registry/gating.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors.js';
import { isDigest, isReservedTag } from '../names.js';
import { MAX_MANIFEST_BYTES, parseManifest, referencedDigests } from '../registry/manifest-format.js';
import { reachableThrough, readableAnywhere } from './blob-access.js';
import type { Handler } from './context.js';
import { absoluteUrl } from './context.js';

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
      // Fetched by digest and not stored: its blobs become reachable through this repository here.
      if (a.cache === 'miss' && isDigest(route.reference)) app.access.grant(EVERYONE, route, referencedDigests(parseManifest(m.bytes)).map((d) => d.digest));
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

async function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer> {
  const tooLarge = () => {
    // The rest of the body is not read: drop the connection after the answer.
    res.setHeader('Connection', 'close');
    return new RegistryError('TOO_LARGE', `manifest is larger than ${limit} bytes`);
  };
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > limit) throw tooLarge();
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * PUT a manifest by tag: the JSON shape is checked, every blob it names must be here with the
 * size it says, and the bytes are stored verbatim under the push host folder.
 */
export const putManifest: Handler<ManifestRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  if (isDigest(route.reference)) {
    throw new RegistryError('UNSUPPORTED', 'manifests are stored by tag here: PUT …/manifests/<tag>, not by digest', { headers: { Allow: 'GET, HEAD' } });
  }
  if (isReservedTag(route.reference)) {
    throw new RegistryError('TAG_INVALID', `tag ${JSON.stringify(route.reference)} is reserved: ollama gives "local", "cloud" and "…-cloud" tags a special meaning; pick another tag`);
  }
  const bytes = await readBody(req, res, MAX_MANIFEST_BYTES);
  const manifest = parseManifest(bytes);
  for (const d of referencedDigests(manifest)) {
    // Only blobs the pusher may read, or put into this repository: else it could link a
    // private digest into its own repository and read it there. Both cases get one answer.
    const linkable = (await reachableThrough(app, ctx.principal, d.digest, route)) || (await readableAnywhere(app, ctx.principal, d.digest));
    const size = linkable ? await app.blobs.size(d.digest) : null;
    if (size === null) {
      throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest names blob ${d.digest}, which is not in this registry; push the blobs before the manifest`, { detail: { digest: d.digest } });
    }
    if (size !== d.size) {
      throw new RegistryError('MANIFEST_INVALID', `manifest says blob ${d.digest} has ${d.size} bytes, but it has ${size}`);
    }
  }
  const ref = await app.manifests.refForWrite(app.config.pushHost, route.namespace, route.model, route.reference);
  const { digest } = await app.manifests.put(ref, bytes);
  app.log.info({ audit: 'manifest-pushed', who: ctx.principal?.label, name: `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`, digest, bytes: bytes.length, ip: req.socket.remoteAddress }, 'manifest-pushed');
  res.writeHead(201, {
    Location: absoluteUrl(req, `/v2/${route.namespace}/${route.model}/manifests/${digest}`),
    'Docker-Content-Digest': digest,
    'Content-Length': 0,
  });
  res.end();
};

/** DELETE a tag (or every tag of a digest) in every host folder; only when allowDelete is on. */
export const deleteManifest: Handler<ManifestRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  if (!app.config.allowDelete) {
    throw new RegistryError('UNSUPPORTED', 'deleting is turned off on this registry (set allowDelete: true in its configuration)', { headers: { Allow: 'GET, HEAD, PUT' } });
  }
  const gone = await app.manifests.deleteReference(route.namespace, route.model, route.reference);
  if (gone.length === 0) {
    throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${route.namespace}/${route.model}${isDigest(route.reference) ? '@' : ':'}${route.reference} is not in this registry`);
  }
  app.log.info({ audit: 'manifest-deleted', who: ctx.principal?.label, names: gone.map((r) => `${r.host}/${r.namespace}/${r.model}:${r.tag}`), ip: req.socket.remoteAddress }, 'manifest-deleted');
  res.writeHead(202, { 'Content-Length': 0 });
  res.end();
};
