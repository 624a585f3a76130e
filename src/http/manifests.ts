import { EVERYONE } from '../registry/blobs/blob-access.js';
import { CACHE_HEADER, UpstreamAnswer } from '../registry/pull-through/cache.js';
import type { StoredManifest } from '../registry/manifests/manifests.js';
import { GATED_BODY, versionGate } from '../registry/pull-through/gating.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors.js';
import { isDigest, isReservedTag } from '../names.js';
import { childManifests, DOCKER_MANIFEST, MAX_MANIFEST_BYTES, OLLAMA_LIST, parseManifest, referencedDigests, type Manifest } from '../registry/manifests/manifest-format.js';
import { sha256Digest } from '../registry/blobs/hashing.js';
import { readBlobManifest } from '../registry/manifests/manifest-tree.js';
import { reachableThrough, readableAnywhere } from './blob-access.js';
import type { Ctx, Handler } from './context.js';
import { absoluteUrl } from './context.js';
import { siteUpstreams, type Site } from './sites.js';

type ManifestRoute = { kind: 'manifest'; namespace: string; model: string; reference: string; invalid?: RegistryError };

/** A tag that is not valid cannot name anything stored: reads say "unknown" (OCI), writes why. */
function unknownTag(route: ManifestRoute): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${route.namespace}/${route.model}:${route.reference.slice(0, 80)} is not in this registry (not a valid tag)`);
}

/** Manifest bytes exactly as stored, whatever the Accept header (ollama and OCI tools alike). */
export const getManifest: Handler<ManifestRoute> = async ({ app, req, res, route, site }) => {
  if (route.invalid) throw unknownTag(route);
  let m: StoredManifest;
  const extra: Record<string, string> = {};
  if (app.cache) {
    try {
      const a = await app.cache.manifest(route.namespace, route.model, route.reference, { userAgent: req.headers['user-agent'], upstreams: siteUpstreams(site), host: site.host });
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
    m = await app.manifests.get(route.namespace, route.model, route.reference, site.host);
  }
  m = await forClassicClient(app, route, m, req.headers.accept, site);
  const requires = await versionGate(app.blobs, m.bytes, req.headers['user-agent']);
  if (requires) {
    // Plain text, as registry.ollama.ai sends it: ollama prints the body after "412: ".
    app.metrics.versionGated.inc();
    res.writeHead(412, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(GATED_BODY), 'X-Ollama-Requires': requires });
    res.end(req.method === 'HEAD' ? undefined : GATED_BODY);
    return;
  }
  if (req.method === 'GET' && !m.untagged) app.usage.touch(m); // memory only: last pull, for eviction and `ls`
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

/**
 * ollama before manifest lists asks with `Accept: <docker v2>` only and cannot read a list: it
 * gets the list's GGUF child (what that client runs) when the child is here. A client that
 * names the list type, or sends no Accept, gets the list as it is stored.
 */
async function forClassicClient(app: Ctx['app'], route: ManifestRoute, m: StoredManifest, accept: string | undefined, site: Site): Promise<StoredManifest> {
  if (m.mediaType !== OLLAMA_LIST || !accept || accept.includes(OLLAMA_LIST) || !accept.includes(DOCKER_MANIFEST)) return m;
  let children;
  try {
    children = childManifests(parseManifest(m.bytes));
  } catch {
    return m;
  }
  const pick = children.find((c) => c.format === 'gguf') ?? children.find((c) => c.mediaType === DOCKER_MANIFEST);
  if (!pick) return m;
  if (app.cache && (await app.blobs.size(pick.digest)) === null) {
    // Through the cache: the child is a blob of the upstream's; fetch it like any blob.
    const fill = await app.cache.fills.get(pick.digest, app.cache.blobSource(route.namespace, route.model, siteUpstreams(site))).catch(() => null);
    await fill?.settled;
  }
  const child = await readBlobManifest(app.driver, pick.digest);
  if (!child || child.manifest.mediaType !== DOCKER_MANIFEST) return m;
  return { ...m, bytes: child.bytes, digest: pick.digest, mediaType: DOCKER_MANIFEST };
}

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
 * Every blob an image names must be here with the size it says; every child of a list must be
 * here as a manifest of this repository or as a blob (ollama's lists push children as blobs).
 */
async function checkReferences(ctx: Ctx<ManifestRoute>, manifest: Manifest): Promise<void> {
  const { app, route } = ctx;
  // Only blobs the pusher may read, or put into this repository: else it could link a private
  // digest into its own repository and read it there. Both cases get one answer.
  const reachable = async (digest: string) => (await reachableThrough(app, ctx.principal, digest, route)) || (await readableAnywhere(app, ctx.principal, digest));
  // A blob this pusher committed through another replica is granted there: its commit marker in the store says so.
  const linkable = async (digest: string) => (await reachable(digest)) || (await app.access.reloadSaved().then(() => reachable(digest)));
  for (const d of referencedDigests(manifest)) {
    const child = manifest.manifests.includes(d);
    let size = (await linkable(d.digest)) ? await app.blobs.size(d.digest) : null;
    if (size === null && child) size = (await app.manifests.find(route.namespace, route.model, d.digest))?.bytes.length ?? null;
    if (size === null) {
      const what = child
        ? `manifest ${d.digest}, which is not in this repository; push the child manifests before the list`
        : `blob ${d.digest}, which is not in this registry; push the blobs before the manifest`;
      throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest names ${what}`, { detail: { digest: d.digest } });
    }
    if (size !== d.size) {
      throw new RegistryError('MANIFEST_INVALID', `manifest says ${child ? 'manifest' : 'blob'} ${d.digest} has ${d.size} bytes, but it has ${size}`);
    }
    // A child kept as a blob (ollama's list) must be whole too: its own blobs here.
    const inner = child ? await readBlobManifest(app.driver, d.digest) : null;
    for (const b of inner ? referencedDigests(inner.manifest) : []) {
      if (!(await linkable(b.digest)) || (await app.blobs.size(b.digest)) === null) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `child manifest ${d.digest} names blob ${b.digest}, which is not in this registry; push the blobs before the list`,
          { detail: { digest: b.digest } });
      }
    }
  }
}

/**
 * PUT a manifest (an image or a list) by tag or by digest: the JSON shape is checked, everything
 * it names must be here, and the bytes are stored verbatim under the push host folder (by
 * digest: as the blob of that digest, see ManifestStore.putUntagged).
 */
export const putManifest: Handler<ManifestRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  if (route.invalid) throw route.invalid;
  const byDigest = isDigest(route.reference);
  if (!byDigest && isReservedTag(route.reference)) {
    throw new RegistryError('TAG_INVALID', `tag ${JSON.stringify(route.reference)} is reserved: ollama gives "local", "cloud" and "…-cloud" tags a special meaning; pick another tag`);
  }
  const bytes = await readBody(req, res, MAX_MANIFEST_BYTES);
  const manifest = parseManifest(bytes);
  if (byDigest && sha256Digest(bytes) !== route.reference) {
    throw new RegistryError('DIGEST_INVALID', `manifest digest mismatch: the URL says ${route.reference}, the body is ${sha256Digest(bytes)}`);
  }
  await checkReferences(ctx, manifest);
  let name: string;
  let digest: string;
  if (byDigest) {
    ({ digest } = await app.manifests.putUntagged(app.config.pushHost, route.namespace, route.model, bytes));
    name = `${app.config.pushHost}/${route.namespace}/${route.model}@${digest}`;
  } else {
    const ref = await app.manifests.refForWrite(app.config.pushHost, route.namespace, route.model, route.reference);
    ({ digest } = await app.manifests.put(ref, bytes));
    name = `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
  }
  app.log.info({ audit: 'manifest-pushed', who: ctx.principal?.label, name, digest, bytes: bytes.length, ip: req.socket.remoteAddress }, 'manifest-pushed');
  res.writeHead(201, {
    Location: absoluteUrl(req, `/v2/${route.namespace}/${route.model}/manifests/${digest}`),
    'Docker-Content-Digest': digest,
    // OCI 1.1: tells the client that this registry indexes referrers by subject.
    ...(manifest.subject ? { 'OCI-Subject': manifest.subject.digest } : {}),
    'Content-Length': 0,
  });
  res.end();
};

/** The answer to any DELETE while allowDelete is off (given before asking for credentials). */
export function deletingOff(allow: string): RegistryError {
  return new RegistryError('UNSUPPORTED', 'deleting is turned off on this registry (set allowDelete: true in its configuration)', { headers: { Allow: allow } });
}

/** DELETE a tag (or every tag of a digest) in every host folder; only when allowDelete is on. */
export const deleteManifest: Handler<ManifestRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  if (route.invalid) throw unknownTag(route);
  if (!app.config.allowDelete) throw deletingOff('GET, HEAD, PUT');
  const gone = await app.manifests.deleteReference(route.namespace, route.model, route.reference);
  if (gone.length === 0) {
    throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${route.namespace}/${route.model}${isDigest(route.reference) ? '@' : ':'}${route.reference} is not in this registry`);
  }
  app.log.info({ audit: 'manifest-deleted', who: ctx.principal?.label, names: gone.map((r) => `${r.host}/${r.namespace}/${r.model}:${r.tag}`), ip: req.socket.remoteAddress }, 'manifest-deleted');
  res.writeHead(202, { 'Content-Length': 0 });
  res.end();
};
