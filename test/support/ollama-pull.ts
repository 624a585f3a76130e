// ollama's legacy pull (server/images.go PullModel/pullModelManifest, server/download.go;
// protocol §2.3, §3): manifest GET, then per blob — one blob at a time — HEAD, the direct-URL
// probe GET, and ≤16 concurrent ranged part GETs written at their offsets into
// blobs/sha256-<hex>-partial (with the -partial-N state files), then verification of
// everything downloaded, the manifest written verbatim, and the old tag's unused blobs pruned.
// A manifest with tensor layers goes to the transfer client instead (ollama-transfer-pull.ts).
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { makeRequestWithRetry, type ClientContext, type RegOpts } from './ollama-auth.js';
import { CanceledError, discard, goDo, headerGet, hostnameOf, parseURL, readAll, resolveReference, sleep, type GoResponse, type GoURL } from './ollama-http.js';
import { pullWithTransfer } from './ollama-transfer-pull.js';
import { errgroup, hasTensorLayers } from './ollama-transfer.js';
import { blobPath, decodeManifest, layoutParts, listManifests, manifestPath, registryURL, type Layer, type Manifest, type ModelName, type PartLayout } from './ollama-names.js';

export interface PullModelOptions {
  modelsDir: string;
  insecure: boolean;
  /** Part layout override (default ollama's: 16 parts, 100 MB…1 GB); a number = fixed part size. */
  partSize?: PartLayout | number;
  /** Delete blobs of the tag's previous manifest that no manifest uses any more (ollama does, unless OLLAMA_NOPRUNE). */
  prune: boolean;
  /** The machine has the MLX runtime (default true): tensor models are pulled by the transfer client. */
  mlx?: boolean;
  /** OLLAMA_MAX_TRANSFER_STREAMS (default 4). */
  maxTransferStreams?: number;
}

export interface PullModelResult {
  manifestPath: string;
  manifest: unknown;
  manifestBytes: Buffer;
  /** Digests fetched from the registry / found on disk, in the order they were handled. */
  downloaded: string[];
  skipped: string[];
  /** Tensor models (transfer client): the most blob bodies in flight at once. */
  maxBodiesInFlight?: number;
}

const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const NUM_DOWNLOAD_PARTS = 16;

class PartStalledError extends Error {
  constructor() {
    super('part stalled');
  }
}

interface Part {
  n: number;
  offset: number;
  size: number;
  completed: number;
}

const errMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));

export async function pullModel(ctx: ClientContext, n: ModelName, o: PullModelOptions): Promise<PullModelResult> {
  const regOpts: RegOpts = { insecure: o.insecure, token: '' };
  const mfPath = manifestPath(o.modelsDir, n);

  // Blobs of the version of this tag we have now: candidates for pruning.
  const deleteMap = new Set<string>();
  try {
    const old = decodeManifest(await readFile(mfPath));
    for (const l of old.layers ?? []) deleteMap.add(l.digest);
    if (old.config.digest) deleteMap.add(old.config.digest);
  } catch {
    // no (or a bad) existing manifest
  }

  let manifestBytes: Buffer;
  let mf: Manifest;
  let raw: unknown;
  try {
    const resp = await makeRequestWithRetry(ctx, 'GET', registryURL(n, 'manifests', n.tag), { Accept: MANIFEST_V2 }, undefined, regOpts);
    manifestBytes = await readAll(resp);
    mf = decodeManifest(manifestBytes);
    raw = JSON.parse(manifestBytes.toString('utf8'));
  } catch (e) {
    throw new Error(`pull model manifest: ${errMessage(e)}`, { cause: e });
  }
  if (hasTensorLayers(mf.layers ?? []) && o.mlx === false) {
    throw new Error('this model requires MLX support, but the MLX runtime is not available');
  }

  const layers: Layer[] = [...(mf.layers ?? []), ...(mf.config.digest ? [mf.config] : [])];
  if (hasTensorLayers(layers)) {
    // The transfer client fetches the blobs; the manifest is written as is; no pruning.
    const r = await pullWithTransfer(ctx, n, layers, regOpts, o.modelsDir, o.maxTransferStreams);
    await mkdir(path.dirname(mfPath), { recursive: true });
    await writeFile(mfPath, manifestBytes, { mode: 0o644 });
    return { manifestPath: mfPath, manifest: raw, manifestBytes, ...r };
  }
  const downloaded: string[] = [];
  const skipped: string[] = [];
  const skipVerify = new Map<string, boolean>();
  for (const layer of layers) {
    const cacheHit = await downloadBlob(ctx, n, layer.digest, regOpts, o);
    (cacheHit ? skipped : downloaded).push(layer.digest);
    skipVerify.set(layer.digest, (skipVerify.get(layer.digest) ?? true) && cacheHit);
    deleteMap.delete(layer.digest);
  }

  // "verifying sha256 digest"
  for (const layer of layers) {
    if (skipVerify.get(layer.digest)) continue;
    const fp = blobPath(o.modelsDir, layer.digest);
    const got = await sha256Of(fp);
    if (got !== layer.digest) {
      await rm(fp, { force: true });
      throw new Error(`digest mismatch, file must be downloaded again: want ${layer.digest}, got ${got}`);
    }
  }

  // "writing manifest": the registry's bytes, verbatim.
  await mkdir(path.dirname(mfPath), { recursive: true });
  await writeFile(mfPath, manifestBytes, { mode: 0o644 });

  deleteMap.delete(mf.config.digest);
  if (o.prune && deleteMap.size > 0) await deleteUnusedLayers(o.modelsDir, deleteMap);

  return { manifestPath: mfPath, manifest: raw, manifestBytes, downloaded, skipped };
}

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

async function deleteUnusedLayers(modelsDir: string, deleteMap: Set<string>): Promise<void> {
  for (const { manifest } of await listManifests(modelsDir)) {
    for (const l of manifest.layers ?? []) deleteMap.delete(l.digest);
    deleteMap.delete(manifest.config.digest);
  }
  for (const digest of deleteMap) {
    try {
      await rm(blobPath(modelsDir, digest));
    } catch {
      // ollama logs and goes on
    }
  }
}

/** downloadBlob: returns true for a cache hit (the blob file exists, whatever its size). */
async function downloadBlob(ctx: ClientContext, n: ModelName, digest: string, regOpts: RegOpts, o: PullModelOptions): Promise<boolean> {
  if (!digest) throw new Error(`${n.namespace}/${n.model}: digest is empty`);
  const fp = blobPath(o.modelsDir, digest);
  await mkdir(path.dirname(fp), { recursive: true });
  try {
    await stat(fp);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const url = registryURL(n, 'blobs', digest);
  const parts = await prepare(ctx, fp, url, regOpts, o);
  await run(ctx, fp, url, parts, regOpts, o);
  return false;
}

const partStatePath = (fp: string, n: number) => `${fp}-partial-${n}`;

function writePartState(fp: string, p: Part): Promise<void> {
  return writeFile(partStatePath(fp, p.n), `${JSON.stringify({ N: p.n, Offset: p.offset, Size: p.size, Completed: p.completed })}\n`);
}

/** blobDownload.Prepare: resume from -partial-* state files, or HEAD for the size and lay out parts. */
async function prepare(ctx: ClientContext, fp: string, url: GoURL, regOpts: RegOpts, o: PullModelOptions): Promise<{ total: number; parts: Part[] }> {
  const prefix = `${path.basename(fp)}-partial-`;
  const stateFiles = (await readdir(path.dirname(fp))).filter((f) => f.startsWith(prefix)).sort();
  const parts: Part[] = [];
  let total = 0;
  for (const f of stateFiles) {
    const j = JSON.parse(await readFile(path.join(path.dirname(fp), f), 'utf8')) as { N: number; Offset: number; Size: number; Completed: number };
    parts.push({ n: j.N, offset: j.Offset, size: j.Size, completed: j.Completed });
    total += j.Size;
  }
  if (parts.length === 0) {
    const resp = await makeRequestWithRetry(ctx, 'HEAD', url, null, undefined, regOpts);
    discard(resp);
    const cl = headerGet(resp, 'Content-Length');
    total = /^[+-]?\d+$/.test(cl) ? Number(cl) : 0; // strconv.ParseInt; an error leaves 0
    for (const { offset, size } of layoutParts(total, o.partSize)) {
      const part = { n: parts.length, offset, size, completed: 0 };
      await writePartState(fp, part);
      parts.push(part);
    }
  }
  return { total, parts };
}

/** blobDownload.run: the probe for the direct URL, the parts, then rename into place. */
async function run(ctx: ClientContext, fp: string, url: GoURL, prep: { total: number; parts: Part[] }, regOpts: RegOpts, o: PullModelOptions): Promise<void> {
  const file = await open(`${fp}-partial`, constants.O_CREAT | constants.O_RDWR, 0o644);
  try {
    await file.truncate(prep.total).catch(() => {});
    const directURL = await probeDirectURL(ctx, url, regOpts);
    const limit = typeof o.partSize === 'object' ? o.partSize.numParts : NUM_DOWNLOAD_PARTS;
    await errgroup(prep.parts.filter((p) => p.completed !== p.size), (part, signal) => downloadPart(ctx, fp, file, directURL, part, signal), limit);
  } finally {
    await file.close();
  }
  for (let i = 0; i < prep.parts.length; i++) await rm(partStatePath(fp, i));
  await rename(`${fp}-partial`, fp);
}

/**
 * The probe GET: same-hostname redirects followed, the first foreign one returned; 307 → its
 * Location, 200 → its Location (mandatory); other statuses fail at once; errors (incl. 404 and
 * other ≥400) are retried with backoff until the probe window closes.
 */
async function probeDirectURL(ctx: ClientContext, url: GoURL, regOpts: RegOpts): Promise<GoURL> {
  const deadline = Date.now() + ctx.timing.probeWindowMs;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ctx.timing.probeWindowMs);
  const deadlineExceeded = () => new CanceledError('context deadline exceeded');
  try {
    for (let n = 1; ; n++) {
      // A shallow copy of the options: a token obtained here is not kept for later requests.
      const probeOpts: RegOpts = {
        ...regOpts,
        checkRedirect: (next, via) => {
          if (via.length > 10) return new Error('maximum redirects exceeded (10) for directURL');
          return hostnameOf(next.host) === hostnameOf(url.host) ? 'follow' : 'useLast';
        },
      };
      let resp: GoResponse;
      try {
        resp = await makeRequestWithRetry(ctx, 'GET', url, null, undefined, probeOpts, ac.signal);
      } catch {
        if (ac.signal.aborted) throw deadlineExceeded();
        const d = Math.min(n * n * 10, 10_000) * (Math.random() + 0.5);
        if (Date.now() + d >= deadline) {
          await sleep(Math.max(0, deadline - Date.now()));
          throw deadlineExceeded();
        }
        await sleep(d);
        continue;
      }
      discard(resp); // the body is never read
      if (resp.status !== 307 && resp.status !== 200) throw new Error(`unexpected status code ${resp.status}`);
      const loc = headerGet(resp, 'Location');
      if (!loc) throw new Error('http: no Location header in response');
      return resolveReference(resp.url, parseURL(loc));
    }
  } finally {
    clearTimeout(timer);
  }
}

/** One part, with ollama's retries: 2^try × base sleeps; stalls restart without using a try. */
async function downloadPart(ctx: ClientContext, fp: string, file: FileHandle, directURL: GoURL, part: Part, signal: AbortSignal): Promise<void> {
  const { maxRetries, retryBaseMs, maxStalls } = ctx.timing;
  let err: Error | undefined;
  let stalls = 0;
  for (let attempt = 0; attempt < maxRetries; attempt++) {
    err = await downloadChunk(ctx, fp, file, directURL, part, signal);
    if (!err) return;
    if (err instanceof CanceledError || (err as NodeJS.ErrnoException).code === 'ENOSPC') throw err;
    if (err instanceof PartStalledError) {
      if (++stalls > maxStalls) break;
      attempt--;
      continue;
    }
    await sleep(2 ** attempt * retryBaseMs);
  }
  throw new Error(`max retries exceeded: ${err?.message}`);
}

/**
 * downloadChunk: `GET directURL` with `Range: bytes=<start>-<end>` through a plain Go client (UA
 * Go-http-client/1.1, no Authorization, default redirects). The status is not looked at: at most
 * the part's remaining length is copied to its offset. A body that ends early is `EOF` (progress
 * dropped); a connection lost mid-body is `unexpected EOF` (progress kept, resumed on retry).
 */
async function downloadChunk(ctx: ClientContext, fp: string, file: FileHandle, directURL: GoURL, part: Part, signal: AbortSignal): Promise<Error | undefined> {
  const ac = new AbortController();
  const onCancel = () => ac.abort();
  signal.addEventListener('abort', onCancel, { once: true });
  let lastUpdated = Date.now();
  let stalled = false;
  const stallMs = ctx.timing.stallTimeoutMs;
  const watchdog = setInterval(() => {
    if (Date.now() - lastUpdated > stallMs) {
      stalled = true;
      ac.abort();
    }
  }, Math.min(1000, stallMs / 2));
  const interrupted = () => (stalled ? new PartStalledError() : signal.aborted ? new CanceledError() : undefined);
  const start = part.offset + part.completed;
  const want = part.size - part.completed;
  let copied = 0;
  try {
    let resp: GoResponse;
    try {
      const headers = { 'User-Agent': 'Go-http-client/1.1', Range: `bytes=${start}-${part.offset + part.size - 1}` };
      resp = await goDo(ctx.transport, { method: 'GET', url: directURL, headers }, { signal: ac.signal });
    } catch (e) {
      return interrupted() ?? (e as Error);
    }
    try {
      // io.CopyN: stop at the part's length; Close below keeps the connection only if that was the whole body.
      for await (const chunk of resp.body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        const take = Math.min(chunk.length, want - copied);
        if (take > 0) {
          await file.write(chunk, 0, take, start + copied);
          copied += take;
          lastUpdated = Date.now();
        }
        if (copied >= want) break;
      }
    } catch (e) {
      // Cancelled, stalled, or the connection dropped mid-body (Go: io.ErrUnexpectedEOF): keep the progress.
      part.completed += copied;
      await writePartState(fp, part);
      const i = interrupted();
      if (i) return i;
      return (e as NodeJS.ErrnoException).code === 'ENOSPC' ? (e as Error) : new Error('unexpected EOF');
    } finally {
      discard(resp);
    }
    if (copied < want) return new Error('EOF'); // a complete but short body: progress rolled back, bytes stay
    part.completed += copied;
    await writePartState(fp, part);
    return undefined;
  } finally {
    clearInterval(watchdog);
    signal.removeEventListener('abort', onCancel);
  }
}
