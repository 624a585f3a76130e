// ollama's transfer client (ollama/ollama:x/transfer/transfer.go; protocol §3.6, §5.7, §6.5):
// what pulls and pushes models with `application/vnd.ollama.image.tensor` layers. The pieces
// its download and upload share: the User-Agent, a client that never follows redirects, the
// body-stream cap, coalesced token refreshes, its own challenge parser and backoff, errgroup.
import { setMaxListeners } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { getAuthorizationToken, type ClientContext, type RegistryChallenge } from './ollama-auth.js';
import type { ModelName } from './ollama-names.js';
import { CanceledError, goDo, type GoResponse, type GoURL, type ReqBody } from './ollama-http.js';

export const TRANSFER_USER_AGENT = 'ollama-transfer/1.0';
export const TENSOR_MEDIA_TYPE = 'application/vnd.ollama.image.tensor';
/** DefaultDownloadConcurrency / DefaultUploadConcurrency: blobs handled at once. */
export const TRANSFER_CONCURRENCY = 64;
/** OLLAMA_MAX_TRANSFER_STREAMS' default: bodies in flight at once. */
export const MAX_TRANSFER_STREAMS = 4;
export const TRANSFER_MAX_RETRIES = 6;

/** transfer.Blob */
export interface TransferBlob {
  digest: string;
  size: number;
}

/** hasTensorLayers (server/images.go): such a manifest goes to the transfer client. */
export const hasTensorLayers = (layers: Array<{ mediaType: string }>) => layers.some((l) => l.mediaType === TENSOR_MEDIA_TYPE);

/** digestToPath: sha256:abc → sha256-abc. */
export const digestToPath = (digest: string) => (digest.length > 7 && digest[6] === ':' ? `${digest.slice(0, 6)}-${digest.slice(7)}` : digest);

/** transfer's parseAuthChallenge: like ollama's getValue, but a quoted value ends at the next `"`, and unquoted values are read up to a comma. */
export function parseAuthChallenge(header: string): RegistryChallenge {
  const h = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : header;
  const value = (key: string) => {
    let start = h.indexOf(`${key}=`);
    if (start === -1) return '';
    start += key.length + 1;
    if (start >= h.length) return '';
    if (h[start] === '"') {
      const end = h.indexOf('"', start + 1);
      return end === -1 ? h.slice(start + 1) : h.slice(start + 1, end);
    }
    const end = h.indexOf(',', start);
    return end === -1 ? h.slice(start) : h.slice(start, end);
  };
  return { realm: value('realm'), service: value('service'), scope: value('scope') };
}

/** backoff: min(attempt²·10 ms, max) × U[0.5, 1.5). */
export function backoff(attempt: number, maxMs: number, signal?: AbortSignal): Promise<void> {
  const d = Math.min(attempt * attempt * 10, maxMs) * (Math.random() + 0.5);
  return delay(d, undefined, { signal }).catch(() => { throw new CanceledError(); });
}

/** golang.org/x/sync/semaphore.Weighted with weight 1: FIFO. Resolves a release function. */
export class Semaphore {
  private waiters: Array<() => void> = [];
  constructor(private free: number) {}
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw new CanceledError();
    if (this.free > 0) this.free--;
    else {
      await new Promise<void>((resolve, reject) => {
        const w = () => { signal?.removeEventListener('abort', onAbort); resolve(); };
        const onAbort = () => { this.waiters = this.waiters.filter((x) => x !== w); reject(new CanceledError()); };
        this.waiters.push(w);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * The bearer token of one transfer, shared by all its requests. `refresh` is the coalescing
 * refreshToken: under one lock, a caller whose rejected token is no longer current only sees the
 * refresh someone else made; otherwise it fetches (ollama's getAuthorizationToken, host rule on
 * the registry's host).
 */
export class TokenSource {
  private lock: Promise<void> = Promise.resolve();
  /** How many token requests were made. */
  fetches = 0;
  constructor(private readonly ctx: ClientContext, public token: string, private readonly registryHost: string) {}
  refresh(challenge: RegistryChallenge, prev: string, signal?: AbortSignal): Promise<void> {
    const run = this.lock.then(async () => {
      if (this.token !== prev) return;
      this.fetches++;
      this.token = await getAuthorizationToken(this.ctx, challenge, this.registryHost, signal);
    });
    this.lock = run.catch(() => {});
    return run;
  }
}

/** One request of transfer's defaultClient: CheckRedirect returns http.ErrUseLastResponse. */
export function transferDo(ctx: ClientContext, method: string, url: GoURL, headers: Record<string, string>, body?: ReqBody, signal?: AbortSignal): Promise<GoResponse> {
  return goDo(ctx.transport, { method, url, headers: { 'User-Agent': TRANSFER_USER_AGENT, ...headers }, body }, { checkRedirect: () => 'useLast', signal });
}

/** fmt.Sprintf("%s/v2/%s/%s", baseURL, repository, rest) as a URL. */
export function transferURL(base: GoURL, repository: string, rest: string): GoURL {
  return { ...base, path: `${base.path.replace(/\/$/, '')}/v2/${repository}/${rest}`, rawQuery: '', fragment: '' };
}

/** n.BaseURL(), its scheme turned to http under --insecure (pullWithTransfer, pushWithTransfer). */
export function transferBaseURL(n: ModelName, insecure: boolean): GoURL {
  return { scheme: insecure ? 'http' : n.scheme, host: n.host, path: '', rawQuery: '', fragment: '' };
}

/**
 * errgroup.WithContext (+ SetLimit) and Wait: the first error cancels the shared signal, is
 * returned, and no further item starts.
 */
export async function errgroup<T>(items: T[], fn: (item: T, signal: AbortSignal) => Promise<void>, limit = Infinity, parent?: AbortSignal): Promise<void> {
  const ac = new AbortController();
  setMaxListeners(0, ac.signal); // every waiting item listens on it
  const onParent = () => ac.abort();
  parent?.addEventListener('abort', onParent, { once: true });
  let failure: { e: unknown } | undefined;
  let next = 0;
  const worker = async () => {
    while (next < items.length && !failure) {
      const item = items[next++]!;
      try {
        await fn(item, ac.signal);
      } catch (e) {
        if (!failure) {
          failure = { e };
          ac.abort();
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  } finally {
    parent?.removeEventListener('abort', onParent);
  }
  if (failure) throw failure.e;
}
