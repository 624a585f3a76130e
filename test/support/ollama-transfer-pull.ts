// ollama's transfer-client download (ollama/ollama:x/transfer/download.go, called by
// server/images.go pullWithTransfer; protocol §3.6). Blobs already on disk with the right size
// are skipped; the rest run 64 at a time, each holding one of 4 body slots while it:
//   1. resolves the URL: GET /v2/<repo>/blobs/<digest> with no Range, the whole body drained,
//      no redirect followed by the client (200 → this URL; 301/302/307 to another host:port →
//      the Location; same host → follow, ≤10; 401 → coalesced token refresh and again);
//   2. GETs the blob again from that URL (so a 200 probe means every byte is sent twice), with
//      `Range: bytes=N-` when a ≥64 MiB blob left N bytes in sha256-<hex>.tmp; 200 restarts,
//      206 appends; the body is hashed as it is written, checked, renamed into place.
// Failed attempts are retried (6, stalls free, "too slow" after 3); a small blob's .tmp goes.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ClientContext, RegOpts } from './ollama-auth.js';
import type { Layer, ModelName } from './ollama-names.js';
import { CanceledError, headerGet, parseURL, resolveReference, type GoResponse, type GoURL } from './ollama-http.js';
import {
  backoff, digestToPath, errgroup, MAX_TRANSFER_STREAMS, parseAuthChallenge, Semaphore, TRANSFER_CONCURRENCY, TRANSFER_MAX_RETRIES,
  TokenSource, transferBaseURL, transferDo, transferURL, type TransferBlob,
} from './ollama-transfer.js';

/** resumeThreshold: only blobs this big keep their .tmp for a Range resume. */
export const RESUME_THRESHOLD = 64 << 20;
const SMALL_BLOB_SPEED_THRESHOLD = 100 << 10;

export interface TransferDownloadOptions {
  blobs: TransferBlob[];
  /** n.BaseURL(), with the scheme already http under --insecure. */
  baseURL: GoURL;
  /** manifest.BlobsPath(""): <models>/blobs */
  destDir: string;
  /** `<namespace>/<model>` */
  repository: string;
  tokens: TokenSource;
  concurrency?: number;
  bodyConcurrency?: number;
  /** defaultStallTimeout (10 s): no byte for this long ends an attempt (without using a retry). */
  stallTimeoutMs?: number;
}

export interface TransferDownloadResult {
  downloaded: string[];
  skipped: string[];
  /** The most body slots held at once (never above bodyConcurrency). */
  maxBodiesInFlight: number;
}

class Stalled extends Error {
  constructor() { super('download stalled'); }
}
class TooSlow extends Error {
  constructor() { super('download too slow'); }
}

/** speedTracker: the last 30 blob speeds; a median once there are 5. */
class Speeds {
  private speeds: number[] = [];
  record(v: number): void {
    this.speeds.push(v);
    if (this.speeds.length > 30) this.speeds.shift();
  }
  median(): number {
    if (this.speeds.length < 5) return 0;
    const s = [...this.speeds].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)]!;
  }
}

export async function transferDownload(ctx: ClientContext, o: TransferDownloadOptions): Promise<TransferDownloadResult> {
  const result: TransferDownloadResult = { downloaded: [], skipped: [], maxBodiesInFlight: 0 };
  const todo: TransferBlob[] = [];
  for (const b of o.blobs) {
    const st = await stat(path.join(o.destDir, digestToPath(b.digest))).catch(() => null);
    if (st && st.size === b.size) result.skipped.push(b.digest);
    else todo.push(b);
  }
  const d: Downloader = {
    ctx, o,
    bodySem: new Semaphore(Math.max(1, o.bodyConcurrency ?? MAX_TRANSFER_STREAMS)),
    speeds: new Speeds(),
    stallMs: o.stallTimeoutMs ?? 10_000,
    inFlight: 0,
    result,
  };
  const sem = new Semaphore(o.concurrency ?? TRANSFER_CONCURRENCY);
  await errgroup(todo, async (blob, signal) => {
    const release = await sem.acquire(signal);
    try {
      await downloadBlob(d, blob, signal);
      result.downloaded.push(blob.digest);
    } finally {
      release();
    }
  });
  return result;
}

interface Downloader {
  ctx: ClientContext;
  o: TransferDownloadOptions;
  bodySem: Semaphore;
  speeds: Speeds;
  stallMs: number;
  inFlight: number;
  result: TransferDownloadResult;
}

async function downloadBlob(d: Downloader, blob: TransferBlob, signal: AbortSignal): Promise<void> {
  let lastErr: unknown;
  let slowRetries = 0;
  let attempt = 0;
  while (attempt < TRANSFER_MAX_RETRIES) {
    if (attempt > 0) await backoff(attempt, 1000 * 2 ** (attempt - 1), signal);
    const start = Date.now();
    try {
      await downloadOnce(d, blob, signal);
      if (blob.size >= SMALL_BLOB_SPEED_THRESHOLD) {
        const s = (Date.now() - start) / 1000;
        if (s > 0) d.speeds.record(blob.size / s);
      }
      return;
    } catch (e) {
      if (blob.size < RESUME_THRESHOLD) await rm(`${path.join(d.o.destDir, digestToPath(blob.digest))}.tmp`, { force: true });
      if (e instanceof CanceledError) throw e;
      if (e instanceof TooSlow) {
        if (++slowRetries >= 3) attempt++;
      } else if (!(e instanceof Stalled)) attempt++;
      lastErr = e;
    }
  }
  throw new Error(`max retries exceeded: ${(lastErr as Error).message}`);
}

async function downloadOnce(d: Downloader, blob: TransferBlob, signal: AbortSignal): Promise<void> {
  // The body slot is held from the resolve GET to the end of the download GET.
  const release = await d.bodySem.acquire(signal);
  d.result.maxBodiesInFlight = Math.max(d.result.maxBodiesInFlight, ++d.inFlight);
  try {
    const u = await resolve(d, transferURL(d.o.baseURL, d.o.repository, `blobs/${blob.digest}`), signal);
    const dest = path.join(d.o.destDir, digestToPath(blob.digest));
    const tmp = `${dest}.tmp`;
    let existing = 0;
    if (blob.size >= RESUME_THRESHOLD) {
      const st = await stat(tmp).catch(() => null);
      if (st && st.size < blob.size) existing = st.size;
      else if (st && st.size > blob.size) await rm(tmp, { force: true });
    }
    const headers: Record<string, string> = {};
    // Authorization only to the registry's own host (not to a CDN).
    if (u.host === d.o.baseURL.host && d.o.tokens.token) headers.Authorization = `Bearer ${d.o.tokens.token}`;
    if (existing > 0) headers.Range = `bytes=${existing}-`;
    const resp = await transferDo(d.ctx, 'GET', u, headers, undefined, signal);
    try {
      if (resp.status === 200) existing = 0;
      else if (resp.status !== 206) throw new Error(`status ${resp.status}`);
      await save(d, blob, resp, existing, signal);
    } finally {
      // The deferred io.Copy(io.Discard, resp.Body) + Close.
      await drain(resp);
    }
  } finally {
    d.inFlight--;
    release();
  }
}

async function drain(resp: GoResponse): Promise<void> {
  try {
    for await (const _ of resp.body) { /* discard */ }
  } catch {
    // the connection is gone
  }
}

/** resolve: GET the blob URL (body drained) until a 200, or a redirect to another host:port. */
async function resolve(d: Downloader, start: GoURL, signal: AbortSignal): Promise<GoURL> {
  let u = start;
  for (let i = 0; i < 10; i++) {
    const prev = d.o.tokens.token;
    const resp = await transferDo(d.ctx, 'GET', u, prev ? { Authorization: `Bearer ${prev}` } : {}, undefined, signal);
    await drain(resp);
    switch (resp.status) {
      case 200:
        return u;
      case 401:
        await d.o.tokens.refresh(parseAuthChallenge(headerGet(resp, 'WWW-Authenticate')), prev, signal);
        break;
      case 301: case 302: case 307: {
        const loc = headerGet(resp, 'Location');
        if (!loc) throw new Error('redirect without Location'); // Go: a nil *url.URL, a panic
        const next = resolveReference(resp.url, parseURL(loc));
        if (next.host !== u.host) return next;
        u = next;
        break;
      }
      default:
        throw new Error(`status ${resp.status}`);
    }
  }
  throw new Error('too many redirects');
}

async function hashPrefix(file: string, n: number): Promise<Hash> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { start: 0, end: n - 1 })) h.update(c as Buffer);
  return h;
}

/** save + copy: append to (or start) the .tmp, hashing; stall/slow checks; digest and size checks; rename. */
async function save(d: Downloader, blob: TransferBlob, resp: GoResponse, existing: number, signal: AbortSignal): Promise<void> {
  const dest = path.join(d.o.destDir, digestToPath(blob.digest));
  const tmp = `${dest}.tmp`;
  await mkdir(path.dirname(dest), { recursive: true });
  let h = createHash('sha256');
  if (existing > 0) {
    try {
      h = await hashPrefix(tmp, existing);
    } catch {
      existing = 0;
      h = createHash('sha256');
    }
  }
  const f = await open(tmp, existing > 0 ? 'r+' : 'w');
  let n = 0;
  let lastRead = Date.now();
  const started = Date.now();
  let cause: Error | undefined;
  // The watchdog cancels only the copy loop, which notices between reads (as in ollama: the
  // request's own context is not the one cancelled, so a silent connection is not cut).
  const tick = setInterval(() => {
    if (Date.now() - lastRead > d.stallMs) cause ??= new Stalled();
    const e = Date.now() - started;
    const m = d.speeds.median();
    if (e > 5000 && m > 0 && n / (e / 1000) < m * 0.1) cause ??= new TooSlow();
  }, Math.min(1000, d.stallMs));
  try {
    for await (const chunk of resp.body as AsyncIterable<Buffer>) {
      if (signal.aborted) throw new CanceledError();
      if (cause) throw cause;
      lastRead = Date.now();
      await f.write(chunk, 0, chunk.length, existing + n);
      h.update(chunk);
      n += chunk.length;
    }
    if (cause) throw cause;
  } finally {
    clearInterval(tick);
    await f.close();
  }
  const got = `sha256:${h.digest('hex')}`;
  if (got !== blob.digest) {
    await rm(tmp, { force: true });
    throw new Error('digest mismatch');
  }
  if (existing + n !== blob.size) {
    await rm(tmp, { force: true });
    throw new Error('size mismatch');
  }
  await rename(tmp, dest);
}

/** pullWithTransfer: every layer and the config, with the token the manifest request got. */
export function pullWithTransfer(ctx: ClientContext, n: ModelName, layers: Layer[], regOpts: RegOpts, modelsDir: string, bodyConcurrency?: number): Promise<TransferDownloadResult> {
  const baseURL = transferBaseURL(n, regOpts.insecure);
  return transferDownload(ctx, {
    blobs: layers.map((l) => ({ digest: l.digest, size: l.size })),
    baseURL,
    destDir: path.join(modelsDir, 'blobs'),
    repository: `${n.namespace}/${n.model}`,
    tokens: new TokenSource(ctx, regOpts.token, baseURL.host),
    bodyConcurrency,
  });
}
