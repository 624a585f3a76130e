// ollama's transfer-client upload (ollama/ollama:x/transfer/upload.go, called by
// server/images.go pushWithTransfer; protocol §5.7):
//   1. HEAD every blob, 128 at a time; only a 200 means "the registry has it";
//   2. the rest, 64 at a time: POST …/blobs/uploads/?digest=… with X-Redirect-Uploads: 2 and
//      X-Content-Length (no body; 201 = already there; exactly 202 + a Location = a session;
//      anything else tried 12 times); with X-Direct-Upload-URL the whole blob is PUT there and
//      committed with a bodyless PUT ?digest=; otherwise PATCH parts (16 parts of 100 MiB…1000
//      MiB, binary units, X-Redirect-Uploads: 1, 3 tries each, 307 → PUT the part to its
//      Location) then the finalize PUT ?digest=&etag= (200/201 only). Bodies hold one of 4 slots.
//   3. the manifest PUT of the raw local manifest bytes (200/201 only).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { ClientContext } from './ollama-auth.js';
import type { Layer, ModelName } from './ollama-names.js';
import { CanceledError, goEncodeValues, goParseQuery, headerGet, parseURL, readAll, resolveReference, type GoResponse, type GoURL } from './ollama-http.js';
import {
  backoff, digestToPath, errgroup, MAX_TRANSFER_STREAMS, parseAuthChallenge, Semaphore, TRANSFER_CONCURRENCY, TRANSFER_MAX_RETRIES,
  TokenSource, transferBaseURL, transferDo, transferURL, type TransferBlob,
} from './ollama-transfer.js';

export const MIN_UPLOAD_PART = 100 << 20;
export const MAX_UPLOAD_PART = 1000 << 20;

export interface TransferUploadOptions {
  blobs: TransferBlob[];
  baseURL: GoURL;
  /** <models>/blobs */
  srcDir: string;
  repository: string;
  tokens: TokenSource;
  manifest: Buffer;
  manifestRef: string;
  concurrency?: number;
  bodyConcurrency?: number;
  /** computeParts override (ollama's: 16 parts clamped to 100 MiB…1000 MiB). */
  partSize?: number;
  /** Test hook: the first attempt at these blobs fails once its session is open (as after a lost connection). */
  failFirstAttempt?: string[];
}

export interface TransferUploadResult {
  /** Sent in PATCH parts / PUT to a direct URL; already there by HEAD; already there by POST (201). */
  uploaded: string[];
  skipped: string[];
  mounted: string[];
}

interface Uploader {
  ctx: ClientContext;
  o: TransferUploadOptions;
  bodySem: Semaphore;
}

const auth = (u: Uploader, prev: string): Record<string, string> => (prev ? { Authorization: `Bearer ${prev}` } : {});
const withQuery = (u: GoURL, pairs: Array<[string, string]>): GoURL => {
  const keep = goParseQuery(u.rawQuery).filter(([k]) => !pairs.some(([p]) => p === k));
  return { ...u, rawQuery: goEncodeValues([...keep, ...pairs]) };
};

export async function transferUpload(ctx: ClientContext, o: TransferUploadOptions): Promise<TransferUploadResult> {
  const u: Uploader = { ctx, o, bodySem: new Semaphore(Math.max(1, o.bodyConcurrency ?? MAX_TRANSFER_STREAMS)) };
  const result: TransferUploadResult = { uploaded: [], skipped: [], mounted: [] };
  const needs = new Map<TransferBlob, boolean>();
  await errgroup(o.blobs, async (b, signal) => { needs.set(b, !(await exists(u, b, signal))); }, 128);
  const todo = o.blobs.filter((b) => needs.get(b));
  result.skipped.push(...o.blobs.filter((b) => !needs.get(b)).map((b) => b.digest));
  const sem = new Semaphore(o.concurrency ?? TRANSFER_CONCURRENCY);
  await errgroup(todo, async (b, signal) => {
    const release = await sem.acquire(signal);
    try {
      result[await uploadBlob(u, b, signal)].push(b.digest);
    } finally {
      release();
    }
  });
  await pushManifest(u, signal401Budget());
  return result;
}

/** ollama recurses on every 401 without a bound; the emulation stops after a few. */
const signal401Budget = () => ({ left: 5 });

async function exists(u: Uploader, b: TransferBlob, signal: AbortSignal, budget = signal401Budget()): Promise<boolean> {
  const prev = u.o.tokens.token;
  const resp = await transferDo(u.ctx, 'HEAD', transferURL(u.o.baseURL, u.o.repository, `blobs/${b.digest}`), auth(u, prev), undefined, signal);
  await readAll(resp);
  if (resp.status === 401 && budget.left-- > 0) {
    await u.o.tokens.refresh(parseAuthChallenge(headerGet(resp, 'WWW-Authenticate')), prev, signal);
    return exists(u, b, signal, budget);
  }
  return resp.status === 200;
}

async function uploadBlob(u: Uploader, b: TransferBlob, signal: AbortSignal): Promise<'uploaded' | 'mounted'> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < TRANSFER_MAX_RETRIES; attempt++) {
    if (attempt > 0) await backoff(attempt, 2000 * 2 ** (attempt - 1), signal);
    try {
      const ep = await initUpload(u, b, signal);
      if (!ep) return 'mounted';
      if (attempt === 0 && u.o.failFirstAttempt?.includes(b.digest)) throw new Error('test hook: the first attempt failed');
      if (ep.direct) await putDirect(u, ep, b, signal);
      else await putChunked(u, ep.session, b, signal);
      return 'uploaded';
    } catch (e) {
      if (e instanceof CanceledError) throw e;
      lastErr = e;
    }
  }
  throw new Error(`max retries exceeded: ${(lastErr as Error).message}`);
}

interface Endpoint {
  session: GoURL;
  direct?: string;
  signedHeaders: Record<string, string>;
}

/** initUpload: null when the registry already has the blob (201). */
async function initUpload(u: Uploader, b: TransferBlob, signal: AbortSignal): Promise<Endpoint | null> {
  const endpoint = withQuery(transferURL(u.o.baseURL, u.o.repository, 'blobs/uploads/'), [['digest', b.digest]]);
  let lastErr: unknown;
  for (let attempt = 0; attempt < 12; attempt++) {
    if (attempt > 0) await backoff(attempt, Math.min(5000 * 2 ** (attempt - 1), 30_000), signal);
    const prev = u.o.tokens.token;
    let resp: GoResponse;
    try {
      resp = await transferDo(u.ctx, 'POST', endpoint, { 'X-Redirect-Uploads': '2', 'X-Content-Length': String(b.size), ...auth(u, prev) }, undefined, signal);
    } catch (e) {
      if (e instanceof CanceledError) throw e;
      lastErr = e;
      continue;
    }
    await readAll(resp).catch(() => {});
    if (resp.status === 401) {
      await u.o.tokens.refresh(parseAuthChallenge(headerGet(resp, 'WWW-Authenticate')), prev, signal);
      continue;
    }
    if (resp.status === 201) return null;
    if (resp.status !== 202) {
      lastErr = new Error(`init upload: status ${resp.status}`);
      continue;
    }
    const loc = headerGet(resp, 'Docker-Upload-Location') || headerGet(resp, 'Location');
    if (!loc) {
      lastErr = new Error('no upload location (server returned 202 without Location header)');
      continue;
    }
    const ep: Endpoint = { session: resolveReference(u.o.baseURL, parseURL(loc)), signedHeaders: {} };
    const direct = headerGet(resp, 'X-Direct-Upload-URL');
    if (direct && parseURL(direct).scheme) {
      ep.direct = direct;
      for (let i = 0; i < resp.rawHeaders.length; i += 2) {
        const m = /^x-signed-header-(.+)$/i.exec(resp.rawHeaders[i]!);
        if (m) ep.signedHeaders[m[1]!] = resp.rawHeaders[i + 1]!;
      }
    }
    return ep;
  }
  throw lastErr;
}

const fileOf = (u: Uploader, b: TransferBlob) => path.join(u.o.srcDir, digestToPath(b.digest));

/** putDirect: the whole blob to the direct URL (signed headers echoed, no Authorization), then the commit. */
async function putDirect(u: Uploader, ep: Endpoint, b: TransferBlob, signal: AbortSignal): Promise<void> {
  const release = await u.bodySem.acquire(signal);
  try {
    const file = fileOf(u, b);
    const resp = await transferDo(u.ctx, 'PUT', parseURL(ep.direct!), { 'Content-Type': 'application/octet-stream', ...ep.signedHeaders },
      { kind: 'stream', length: b.size, open: () => createReadStream(file) }, signal);
    const body = await readAll(resp).catch(() => Buffer.alloc(0));
    if (resp.status !== 200 && resp.status !== 201) throw new Error(`direct put: status ${resp.status}: ${body.toString('utf8')}`);
  } finally {
    release();
  }
  await bodylessPut(u, withQuery(ep.session, [['digest', b.digest]]), 'commit', signal);
}

/** bodylessRegistryPUT: 6 tries; 401 → token; only 200/201 count. */
async function bodylessPut(u: Uploader, url: GoURL, op: string, signal: AbortSignal): Promise<void> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < TRANSFER_MAX_RETRIES; attempt++) {
    if (attempt > 0) await backoff(attempt, 2000 * 2 ** (attempt - 1), signal);
    const prev = u.o.tokens.token;
    let resp: GoResponse;
    try {
      resp = await transferDo(u.ctx, 'PUT', url, { 'Content-Type': 'application/octet-stream', ...auth(u, prev) }, undefined, signal);
    } catch (e) {
      if (e instanceof CanceledError) throw e;
      lastErr = e;
      continue;
    }
    const body = await readAll(resp).catch(() => Buffer.alloc(0));
    if (resp.status === 401) await u.o.tokens.refresh(parseAuthChallenge(headerGet(resp, 'WWW-Authenticate')), prev, signal);
    else if (resp.status === 200 || resp.status === 201) return;
    else lastErr = new Error(`${op}: status ${resp.status}: ${body.subarray(0, 512).toString('utf8')}`);
  }
  throw new Error(`max retries exceeded: ${(lastErr as Error).message}`);
}

interface Part {
  n: number;
  offset: number;
  size: number;
}

/** computePartsWithLimits(total, 16, 100 MiB, 1000 MiB), or a fixed part size. */
export function computeParts(total: number, fixed?: number): Part[] {
  const size = fixed ?? Math.min(Math.max(Math.floor(total / 16), MIN_UPLOAD_PART), MAX_UPLOAD_PART);
  const parts: Part[] = [];
  for (let offset = 0; offset < total; offset += size) parts.push({ n: parts.length, offset, size: Math.min(size, total - offset) });
  return parts;
}

/** putChunked: PATCH the parts in order, each to the URL the previous answer named; then finalize. */
async function putChunked(u: Uploader, session: GoURL, b: TransferBlob, signal: AbortSignal): Promise<void> {
  const parts = computeParts(b.size, u.o.partSize);
  const composite = createHash('md5');
  let current = session;
  for (const part of parts) {
    let lastErr: unknown;
    let done: { next?: GoURL; md5: Buffer } | undefined;
    for (let attempt = 0; attempt < 3 && !done; attempt++) {
      if (attempt > 0) await backoff(attempt, 2000 * 2 ** (attempt - 1), signal);
      try {
        done = await uploadOnePart(u, current, part, fileOf(u, b), signal);
      } catch (e) {
        if (e instanceof CanceledError) throw e;
        lastErr = e;
      }
    }
    if (!done) throw new Error(`part ${part.n}: ${(lastErr as Error).message}`);
    composite.update(done.md5);
    if (done.next) current = done.next;
  }
  const etag = `${composite.digest('hex')}-${parts.length}`;
  await bodylessPut(u, withQuery(current, [['digest', b.digest], ['etag', etag]]), 'finalize', signal);
}

function partBody(file: string, part: Part, md5: ReturnType<typeof createHash>) {
  return { kind: 'stream' as const, length: part.size, open: () => createReadStream(file, { start: part.offset, end: part.offset + part.size - 1 }).on('data', (c) => md5.update(c as Buffer)) };
}

/** uploadOnePart: one PATCH; a 307 re-sends the part as a PUT to its Location (same body slot). */
async function uploadOnePart(u: Uploader, session: GoURL, part: Part, file: string, signal: AbortSignal): Promise<{ next?: GoURL; md5: Buffer }> {
  const release = await u.bodySem.acquire(signal);
  try {
    const md5 = createHash('md5');
    const prev = u.o.tokens.token;
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Content-Range': `${part.offset}-${part.offset + part.size - 1}`,
      'X-Redirect-Uploads': '1',
      ...auth(u, prev),
    };
    const resp = await transferDo(u.ctx, 'PATCH', session, headers, partBody(file, part, md5), signal);
    const body = await readAll(resp).catch(() => Buffer.alloc(0));
    const loc = headerGet(resp, 'Docker-Upload-Location') || headerGet(resp, 'Location');
    const next = loc ? resolveReference(session, parseURL(loc)) : undefined;
    if (resp.status === 307) {
      const target = headerGet(resp, 'Location');
      if (!target) throw new Error(`patch part ${part.n}: 307 without Location`);
      const cdnMd5 = createHash('md5');
      const put = await transferDo(u.ctx, 'PUT', resolveReference(session, parseURL(target)), { 'Content-Type': 'application/octet-stream' }, partBody(file, part, cdnMd5), signal);
      const text = await readAll(put).catch(() => Buffer.alloc(0));
      if (![200, 201, 202].includes(put.status)) throw new Error(`cdn put part ${part.n}: status ${put.status}: ${text.toString('utf8')}`);
      return { next, md5: cdnMd5.digest() };
    }
    if (resp.status === 401) {
      await u.o.tokens.refresh(parseAuthChallenge(headerGet(resp, 'WWW-Authenticate')), prev, signal);
      throw new Error(`patch part ${part.n}: auth retry`);
    }
    if (resp.status >= 400) throw new Error(`patch part ${part.n}: status ${resp.status}: ${body.toString('utf8')}`);
    if (!next) throw new Error(`patch part ${part.n}: no next URL in response`);
    return { next, md5: md5.digest() };
  } finally {
    release();
  }
}

/** pushManifest: PUT the raw bytes; 401 → token and again; only 200/201 count. */
async function pushManifest(u: Uploader, budget: { left: number }): Promise<void> {
  const prev = u.o.tokens.token;
  const url = transferURL(u.o.baseURL, u.o.repository, `manifests/${u.o.manifestRef}`);
  const resp = await transferDo(u.ctx, 'PUT', url, { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json', ...auth(u, prev) }, { kind: 'buffer', data: u.o.manifest });
  const body = await readAll(resp).catch(() => Buffer.alloc(0));
  if (resp.status === 401 && budget.left-- > 0) {
    await u.o.tokens.refresh(parseAuthChallenge(headerGet(resp, 'WWW-Authenticate')), prev);
    return pushManifest(u, budget);
  }
  if (resp.status !== 200 && resp.status !== 201) throw new Error(`status ${resp.status}: ${body.toString('utf8')}`);
}

/** pushWithTransfer: layers and config, the raw manifest file bytes, a fresh (empty) token. */
export function pushWithTransfer(
  ctx: ClientContext, n: ModelName, layers: Layer[], manifest: Buffer, insecure: boolean, modelsDir: string,
  opts: { bodyConcurrency?: number; partSize?: number; failFirstAttempt?: string[] } = {},
): Promise<TransferUploadResult> {
  const baseURL = transferBaseURL(n, insecure);
  return transferUpload(ctx, {
    blobs: layers.map((l) => ({ digest: l.digest, size: l.size })),
    baseURL,
    srcDir: path.join(modelsDir, 'blobs'),
    repository: `${n.namespace}/${n.model}`,
    tokens: new TokenSource(ctx, '', baseURL.host),
    manifest,
    manifestRef: n.tag,
    ...opts,
  });
}
