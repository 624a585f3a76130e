// A tiny built-in model, served by the mirror itself under each intercepted host, so that one
// stock `ollama pull ollama-registry-selftest` on a client proves the whole path (proxy or DNS,
// CA trust, TLS, the registry API) without the internet. Its bytes are made here, in memory: a
// valid manifest, config, license and params, and a "model" layer that is a few KB of text, not
// a GGUF. ollama checks digests and sizes on pull and reads the model only when it runs it.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors.js';
import { parseRange } from '../http/range.js';

export const SELFTEST_MODEL = 'ollama-registry-selftest';
const REPO = `library/${SELFTEST_MODEL}`;
const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';

interface Blob {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

function blob(mediaType: string, bytes: Buffer): Blob {
  return { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, bytes };
}

const line = 'ollama-registry self-test: this is not a model, only proof that pulls reach the LAN mirror.\n';
const layers = [
  blob('application/vnd.ollama.image.model', Buffer.from(line.repeat(Math.ceil(4096 / line.length)))),
  blob('application/vnd.ollama.image.license', Buffer.from('The ollama-registry self-test model carries no work of authorship; use it freely.\n')),
  blob('application/vnd.ollama.image.params', Buffer.from(JSON.stringify({ num_ctx: 256 }))),
];
const config = blob('application/vnd.docker.container.image.v1+json', Buffer.from(JSON.stringify({
  model_format: 'gguf', model_family: 'selftest', model_families: ['selftest'], model_type: '0B', file_type: 'none',
  architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
})));
const manifest = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: MANIFEST_TYPE,
  config: { mediaType: config.mediaType, digest: config.digest, size: config.bytes.length },
  layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.bytes.length })),
}));
const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
const blobs = new Map([...layers, config].map((b) => [b.digest, b]));

/** The self-test's manifest and blob digests, for tests and doctor. */
export const SELFTEST = { manifest, manifestDigest, blobs: [...blobs.values()].map((b) => ({ digest: b.digest, size: b.bytes.length })) };

function send(req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string | number>, body: Buffer): void {
  res.writeHead(status, { ...headers, 'Content-Length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * Answers a GET or HEAD for the self-test model on an intercepted host; false for any other
 * path. Throws RegistryError for an unknown tag, digest or a bad range under its name.
 */
export function serveSelftest(req: IncomingMessage, res: ServerResponse, host: string): boolean {
  const p = (req.url ?? '').split('?')[0]!;
  const m = /^\/v2\/([^/]+\/[^/]+)\/(manifests|blobs)\/([^/]+)$/.exec(p);
  if (!m || m[1]!.toLowerCase() !== REPO || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  const ref = m[3]!;
  if (m[2] === 'manifests') {
    if (ref !== 'latest' && ref !== manifestDigest) throw new RegistryError('MANIFEST_UNKNOWN', `${SELFTEST_MODEL} has only the tag latest`);
    send(req, res, 200, { 'Content-Type': MANIFEST_TYPE, 'Docker-Content-Digest': manifestDigest }, manifest);
    return true;
  }
  const b = blobs.get(ref);
  if (!b) throw new RegistryError('BLOB_UNKNOWN', `${SELFTEST_MODEL} has no blob ${ref.slice(0, 80)}`);
  const headers = { 'Content-Type': 'application/octet-stream', 'Docker-Content-Digest': b.digest, 'Accept-Ranges': 'bytes' };
  const range = parseRange(req.headers.range, b.bytes.length);
  if (range) {
    send(req, res, 206, { ...headers, 'Content-Range': `bytes ${range.start}-${range.end}/${b.bytes.length}` }, b.bytes.subarray(range.start, range.end + 1));
    return true;
  }
  // As for every blob: ollama takes the Location of a 200 as the URL of its ranged parts.
  send(req, res, 200, req.method === 'GET' ? { ...headers, Location: `https://${host}${p}` } : headers, b.bytes);
  return true;
}
