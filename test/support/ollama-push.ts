// ollama's legacy push (server/images.go PushModel, server/upload.go; protocol §5): per blob —
// layers then config, one at a time — HEAD, POST …/blobs/uploads/ (with from/mount), PATCH parts
// in order following each response's Location (307 "redirect uploads" handled as ollama does),
// the commit PUT with digest and S3-style etag; then the manifest PUT of json.Marshal(manifest).
// A model with tensor layers goes to the transfer client instead (ollama-transfer-push.ts).
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { makeRequest, makeRequestWithRetry, getAuthorizationToken, parseRegistryChallenge, type ClientContext, type RegOpts } from './ollama-auth.js';
import { CanceledError, discard, formatURL, goEncodeValues, goParseQuery, headerGet, parseURL, readAll, resolveReference, sleep, ErrNotExist, type GoURL } from './ollama-http.js';
import { pushWithTransfer } from './ollama-transfer-push.js';
import { hasTensorLayers } from './ollama-transfer.js';
import { blobPath, decodeManifest, layoutParts, manifestPath, marshalManifest, parseNameLoose, registryURL, type Layer, type ModelName, type PartLayout } from './ollama-names.js';

export interface PushModelOptions {
  modelsDir: string;
  insecure: boolean;
  /** Part layout override (default ollama's: 16 parts, 100 MB…1 GB); a number = fixed part size. */
  partSize?: PartLayout | number;
  /**
   * Test hook: treat the response to one PATCH as lost, so ollama's retry re-sends the same
   * Content-Range to the same URL. `true` = the first PATCH of the push; or pick the blob/part.
   */
  retryPatchOnce?: boolean | { digest?: string; part?: number };
  /** OLLAMA_MAX_TRANSFER_STREAMS (default 4), for tensor models. */
  maxTransferStreams?: number;
  /** Test hook (tensor models): the first attempt at these blobs fails after opening its session. */
  failFirstAttempt?: string[];
}

export interface PushModelResult {
  manifestPath: string;
  /** The bytes of the manifest PUT (json.Marshal of the local manifest). */
  manifestBytes: Buffer;
  /** Uploaded with PATCH/PUT; skipped because HEAD found them; mounted/known (POST → 201). */
  uploaded: string[];
  skipped: string[];
  mounted: string[];
}

const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const NUM_UPLOAD_PARTS = 16;

class MaxRetriesError extends Error {}

interface Part {
  n: number;
  offset: number;
  size: number;
  md5?: Buffer;
}

/** An unbounded channel of upload URLs (Go: b.nextURL). */
class UrlQueue {
  private items: GoURL[] = [];
  private waiters: Array<(u: GoURL) => void> = [];
  push(u: GoURL): void {
    const w = this.waiters.shift();
    if (w) w(u);
    else this.items.push(u);
  }
  recv(): Promise<GoURL> {
    const u = this.items.shift();
    return u ? Promise.resolve(u) : new Promise((r) => this.waiters.push(r));
  }
}

export async function pushModel(ctx: ClientContext, n: ModelName, o: PushModelOptions): Promise<PushModelResult> {
  const mfPath = manifestPath(o.modelsDir, n);
  let bytes: Buffer;
  try {
    bytes = await readFile(mfPath);
  } catch {
    throw new Error(`open ${mfPath}: no such file or directory`);
  }
  const mf = decodeManifest(bytes);
  const layers: Layer[] = [...(mf.layers ?? []), ...(mf.config.digest ? [mf.config] : [])];
  if (hasTensorLayers(layers)) {
    // The raw manifest file, not json.Marshal of it: tensor layers carry fields Manifest drops.
    const r = await pushWithTransfer(ctx, n, layers, bytes, o.insecure, o.modelsDir, {
      bodyConcurrency: o.maxTransferStreams, partSize: typeof o.partSize === 'number' ? o.partSize : undefined, failFirstAttempt: o.failFirstAttempt,
    });
    return { manifestPath: mfPath, manifestBytes: bytes, ...r };
  }

  const regOpts: RegOpts = { insecure: o.insecure, token: '' };
  const result: PushModelResult = { manifestPath: mfPath, manifestBytes: Buffer.alloc(0), uploaded: [], skipped: [], mounted: [] };
  const hook = { pending: o.retryPatchOnce ? (o.retryPatchOnce === true ? {} : o.retryPatchOnce) : undefined };
  for (const layer of layers) {
    const outcome = await uploadBlob(ctx, n, layer, regOpts, o, hook);
    result[outcome].push(layer.digest);
  }

  // "pushing manifest"
  const body = marshalManifest(mf);
  result.manifestBytes = body;
  const resp = await makeRequestWithRetry(ctx, 'PUT', registryURL(n, 'manifests', n.tag), { 'Content-Type': MANIFEST_V2 }, { kind: 'buffer', data: body }, regOpts);
  discard(resp);
  return result;
}

type Hook = { pending?: { digest?: string; part?: number } };

async function uploadBlob(ctx: ClientContext, n: ModelName, layer: Layer, regOpts: RegOpts, o: PushModelOptions, hook: Hook): Promise<'uploaded' | 'skipped' | 'mounted'> {
  try {
    const head = await makeRequestWithRetry(ctx, 'HEAD', registryURL(n, 'blobs', layer.digest), null, undefined, regOpts);
    discard(head);
    return 'skipped';
  } catch (e) {
    if (!(e instanceof ErrNotExist)) throw e;
  }

  // blobUpload.Prepare
  const fp = blobPath(o.modelsDir, layer.digest);
  const postURL = registryURL(n, 'blobs', 'uploads/');
  if (layer.from) {
    const from = parseNameLoose(layer.from);
    postURL.rawQuery = goEncodeValues([['mount', layer.digest], ['from', `${from.namespace}/${from.model}`]]);
  }
  const resp = await makeRequestWithRetry(ctx, 'POST', postURL, null, undefined, regOpts);
  discard(resp);
  const location = headerGet(resp, 'Docker-Upload-Location') || headerGet(resp, 'Location');
  let total: number;
  try {
    total = (await stat(fp)).size;
  } catch {
    throw new Error(`stat ${fp}: no such file or directory`);
  }
  if (resp.status === 201) return 'mounted';
  const parts: Part[] = layoutParts(total, o.partSize).map((p, i) => ({ n: i, ...p }));
  const urls = new UrlQueue();
  urls.push(parseURL(location)); // not resolved: a relative Location fails on the next request

  // blobUpload.Run
  const ac = new AbortController();
  const cancelled = new Promise<null>((r) => ac.signal.addEventListener('abort', () => r(null), { once: true }));
  let failure: { e: unknown } | undefined;
  const running: Array<Promise<void>> = [];
  let active = 0;
  let slotFreed: (() => void) | undefined;
  for (const part of parts) {
    const url = await Promise.race([urls.recv(), cancelled]);
    if (!url) break;
    while (active >= NUM_UPLOAD_PARTS) await new Promise<void>((r) => (slotFreed = r));
    active++;
    running.push(
      uploadPartWithRetries(ctx, fp, layer.digest, url, part, regOpts, urls, hook, ac.signal)
        .catch((e) => {
          if (!failure) {
            failure = { e };
            ac.abort();
          }
        })
        .finally(() => {
          active--;
          slotFreed?.();
        }),
    );
  }
  await Promise.all(running);
  if (failure) throw failure.e;

  // The commit: PUT <last Location> + digest & etag, retried like a part.
  const commitURL = await urls.recv();
  const md5 = createHash('md5');
  for (const p of parts) md5.update(p.md5!);
  commitURL.rawQuery = goEncodeValues([...goParseQuery(commitURL.rawQuery), ['digest', layer.digest], ['etag', `${md5.digest('hex')}-${parts.length}`]]);
  const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': '0' };
  let err: unknown;
  for (let attempt = 0; attempt < ctx.timing.maxRetries; attempt++) {
    try {
      discard(await makeRequestWithRetry(ctx, 'PUT', commitURL, headers, undefined, regOpts));
      return 'uploaded';
    } catch (e) {
      err = e;
      await sleep(2 ** attempt * ctx.timing.retryBaseMs);
    }
  }
  throw err;
}

async function uploadPartWithRetries(ctx: ClientContext, fp: string, digest: string, url: GoURL, part: Part, regOpts: RegOpts, urls: UrlQueue, hook: Hook, signal: AbortSignal): Promise<void> {
  let err: unknown;
  for (let attempt = 0; attempt < ctx.timing.maxRetries; attempt++) {
    if (signal.aborted) throw new CanceledError();
    try {
      await uploadPart(ctx, fp, digest, 'PATCH', url, part, regOpts, urls, hook, signal);
      return;
    } catch (e) {
      if (e instanceof CanceledError || e instanceof MaxRetriesError) throw e;
      err = e;
      await sleep(2 ** attempt * ctx.timing.retryBaseMs);
    }
  }
  throw new MaxRetriesError(`max retries exceeded: ${(err as Error).message}`);
}

/** uploadPart: one PATCH (or, after a 307, the PUT of the part to the redirect URL). */
async function uploadPart(
  ctx: ClientContext, fp: string, digest: string, method: 'PATCH' | 'PUT', url: GoURL, part: Part, regOpts: RegOpts, urls: UrlQueue, hook: Hook, signal: AbortSignal,
): Promise<void> {
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(part.size) };
  if (method === 'PATCH') {
    headers['X-Redirect-Uploads'] = '1';
    headers['Content-Range'] = `${part.offset}-${part.offset + part.size - 1}`;
  }
  let md5: Hash = createHash('md5');
  const body = {
    kind: 'stream' as const,
    length: part.size,
    open: () => {
      md5 = createHash('md5');
      return createReadStream(fp, { start: part.offset, end: part.offset + part.size - 1 }).on('data', (c) => md5.update(c as Buffer));
    },
  };
  const resp = await makeRequest(ctx, method, url, headers, body, regOpts, signal);
  const nextURL = parseURL(headerGet(resp, 'Docker-Upload-Location') || headerGet(resp, 'Location'));

  if (resp.status === 307) {
    discard(resp);
    urls.push(nextURL);
    const loc = headerGet(resp, 'Location');
    if (!loc) throw new Error('http: no Location header in response');
    const redirectURL = resolveReference(resp.url, parseURL(loc));
    let err: unknown;
    for (let attempt = 0; attempt < ctx.timing.maxRetries; attempt++) {
      try {
        // Presigned target: fresh options, so no token and no --insecure rewrite.
        await uploadPart(ctx, fp, digest, 'PUT', redirectURL, part, { insecure: false, token: '' }, urls, hook, signal);
        return;
      } catch (e) {
        if (e instanceof CanceledError || e instanceof MaxRetriesError) throw e;
        err = e;
        await sleep(2 ** attempt * ctx.timing.retryBaseMs);
      }
    }
    throw new MaxRetriesError(`max retries exceeded: ${(err as Error).message}`);
  }
  if (resp.status === 401) {
    const challenge = parseRegistryChallenge(headerGet(resp, 'WWW-Authenticate'));
    regOpts.token = await getAuthorizationToken(ctx, challenge, url.host, signal);
  }
  if (resp.status >= 400) {
    const text = (await readAll(resp)).toString('utf8');
    throw new Error(`http status ${resp.status} ${resp.statusText}: ${text}`);
  }
  discard(resp);

  const h = hook.pending;
  if (method === 'PATCH' && h && (h.digest === undefined || h.digest === digest) && (h.part ?? 0) === part.n) {
    hook.pending = undefined;
    throw new Error(`test hook: response to PATCH ${formatURL(url)} (${headers['Content-Range']}) treated as lost`);
  }
  if (method === 'PATCH') urls.push(nextURL);
  part.md5 = md5.digest();
}
