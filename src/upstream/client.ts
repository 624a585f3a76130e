// An HTTP client for one upstream registry of the ollama/OCI API (registry.ollama.ai, hf.co,
// another ollama-registry, a CNCF distribution). It follows redirects itself (registry.ollama.ai
// answers blob requests with a 307 to a CDN host), signs in after a 401 (auth.ts: the registry's
// own ollama key, Basic, or anonymous tokens), retries with backoff, cuts the upstream off after
// repeated failures, and honours HTTPS_PROXY/NO_PROXY. Where redirects and token realms may lead
// is decided by guard.ts; what an upstream said reaches clients only as a short reason.
// undici: its EnvHttpProxyAgent gives proxy support with per-origin keep-alive pools, and its
// request() streams bodies with low overhead.
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import type { Dispatcher } from 'undici';
import { isUndiciError, undici } from './undici.js';
import { UpstreamAuth, type SignIn } from './auth.js';
import { MAX_MANIFEST_BYTES } from '../registry/manifests/manifest-format.js';
import { dropBody, header, readSmall, TooLarge, UpstreamError, USER_AGENT, withReason, type UpstreamErrorKind, type UpstreamResponse } from './common.js';
import type { UpstreamConfig } from './config.js';
import { OutboundGuard } from './guard.js';
import type { KeySource } from './key.js';
import { MANIFEST_TYPES } from '../registry/manifests/manifest-format.js';

export { readSmall, UpstreamError, USER_AGENT, type UpstreamErrorKind, type UpstreamResponse } from './common.js';

const MAX_REDIRECTS = 10;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// Not unref'd: a command waiting only on this back-off (a `pull` whose upstream is unreachable)
// would otherwise exit mid-retry with no message. The wait is short and bounded.
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// The usual network errors in words a user can act on.
const UNREACHABLE_HINTS: Record<string, string> = {
  ENOTFOUND: 'the host name does not resolve: no network, no DNS, or a typo',
  EAI_AGAIN: 'the host name could not be resolved now: no network or DNS',
  ECONNREFUSED: 'nothing listens there',
  UND_ERR_CONNECT_TIMEOUT: 'no connection within the timeout',
  ENETUNREACH: 'no route to that network',
  EHOSTUNREACH: 'no route to that host',
};

export class Upstream {
  readonly name: string;
  readonly base: URL;
  private readonly dispatcher: Dispatcher;
  private failures = 0;
  private cutOffUntil = 0;
  private readonly auth: UpstreamAuth;
  private readonly guard: OutboundGuard;
  /** Body bytes received from this upstream (all requests), for logs and tests. */
  bytesIn = 0;

  /** `key`: the registry's own key, for upstreams that want ollama's signed sign-in (none: never signs). */
  constructor(readonly config: UpstreamConfig, private readonly onFailure?: (reason: UpstreamErrorKind) => void, key?: KeySource) {
    this.name = config.name;
    this.base = new URL(config.url + '/');
    const timeout = config.timeoutSeconds * 1000;
    const tls = config.ca ? { ca: [...rootCertificates, readFileSync(config.ca, 'utf8')] } : {};
    const env = process.env;
    this.guard = new OutboundGuard(this, config.allowPrivateHosts, !!(env.https_proxy || env.HTTPS_PROXY || env.http_proxy || env.HTTP_PROXY));
    this.dispatcher = new (undici().EnvHttpProxyAgent)({
      headersTimeout: timeout,
      bodyTimeout: timeout,
      // Direct connections resolve names through the guard (proxied ones are checked in once()).
      connect: { timeout: Math.min(timeout, 15_000), lookup: this.guard.lookup, ...tls },
      requestTls: tls,
      keepAliveTimeout: 30_000,
    });
    this.auth = new UpstreamAuth(this, this.dispatcher, this.guard, key);
    this.auth.checkKey();
  }

  get host(): string {
    return this.config.host;
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }

  /** `name: why` for messages that reach users. */
  describe(): string {
    return `upstream ${this.name} (${this.config.url})`;
  }

  url(path: string): string {
    return new URL(path.replace(/^\/+/, ''), this.base).href;
  }

  private checkCutOff(): void {
    const left = this.cutOffUntil - Date.now();
    if (left > 0) {
      this.onFailure?.('cut-off');
      throw new UpstreamError(this.name, 'cut-off', `${this.describe()} is cut off after ${this.config.maxFailures} failures in a row; retrying in ${Math.ceil(left / 1000)} s`);
    }
  }

  private recordFailure(): void {
    this.failures++;
    if (this.config.maxFailures > 0 && this.failures >= this.config.maxFailures) {
      this.cutOffUntil = Date.now() + this.config.failTimeoutSeconds * 1000;
    }
  }

  private recordSuccess(): void {
    this.failures = 0;
    this.cutOffUntil = 0;
  }

  /**
   * One request with redirects, Bearer auth and retries. Resolves for any status the caller must
   * judge (2xx, 4xx, 412…); rejects with UpstreamError when the upstream is unreachable or keeps
   * answering 5xx/429. The caller must consume or destroy the body.
   */
  async send(method: 'GET' | 'HEAD', target: string, headers: Record<string, string> = {}, opts: { retries?: number; direct?: boolean; signal?: AbortSignal } = {}): Promise<UpstreamResponse> {
    this.checkCutOff();
    const retries = opts.retries ?? this.config.retries;
    let lastErr: unknown;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await sleep(Math.min(250 * 2 ** (attempt - 1), 5000) * (0.5 + Math.random()));
      try {
        const res = await this.once(method, target, headers, opts.direct ?? false, opts.signal);
        if (res.status >= 500 || res.status === 429) {
          const body = await readSmall(res);
          lastErr = new UpstreamError(this.name, 'status', `${this.describe()} answered ${res.status}${withReason(body)}`, { status: res.status });
          continue;
        }
        this.recordSuccess();
        return res;
      } catch (e) {
        lastErr = e;
        if (opts.signal?.aborted) throw e;
        // Refused credentials: the upstream is up, so this is not a failure that cuts it off.
        if (e instanceof UpstreamError && e.kind === 'auth') {
          this.onFailure?.('auth');
          throw e;
        }
        // A malformed answer will not get better by asking again.
        if (e instanceof UpstreamError) break;
      }
    }
    this.recordFailure();
    this.onFailure?.(lastErr instanceof UpstreamError ? lastErr.kind : 'unreachable');
    if (lastErr instanceof UpstreamError) throw lastErr;
    const code = (lastErr as NodeJS.ErrnoException)?.code;
    const hint = code ? UNREACHABLE_HINTS[code] : undefined;
    const msg = (lastErr as Error | undefined)?.message;
    const why = code ? `${code}${hint ? ` (${hint})` : msg && !msg.includes(code) ? ` ${msg}` : ''}` : String(msg ?? lastErr);
    throw new UpstreamError(this.name, 'unreachable', `${this.describe()} is unreachable: ${why}`, { cause: lastErr });
  }

  private async once(method: 'GET' | 'HEAD', target: string, headers: Record<string, string>, direct: boolean, signal?: AbortSignal): Promise<UpstreamResponse> {
    let url = target;
    let from: URL | undefined;
    let signedIn: SignIn | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const u = new URL(url);
      // Every hop, the first included (a remembered CDN URL), is checked before it is asked.
      await this.guard.check(u, from, from ? 'redirected to' : 'sent this registry to');
      // Credentials go to the registry's own host only, never to a CDN it redirects to.
      const ours = u.host === this.base.host && !direct;
      const h: Record<string, string> = { 'user-agent': USER_AGENT, ...headers };
      const auth = ours ? this.auth.authorization(u.pathname) : undefined;
      if (auth) h.authorization = auth;
      const res = await undici().request(url, { method, headers: h, dispatcher: this.dispatcher, signal, highWaterMark: 1 << 20 });
      const out: UpstreamResponse = { status: res.statusCode, headers: res.headers, body: res.body, url };
      if (REDIRECTS.has(res.statusCode)) {
        const loc = header(res.headers, 'location');
        res.body.resume();
        if (!loc) throw new UpstreamError(this.name, 'invalid', `${this.describe()} answered ${res.statusCode} without a Location`);
        from = u;
        try {
          url = new URL(loc, url).href;
        } catch {
          throw new UpstreamError(this.name, 'invalid', `${this.describe()} answered ${res.statusCode} with a Location that is not a URL`);
        }
        continue;
      }
      if (ours && (res.statusCode === 401 || res.statusCode === 403)) {
        const body = await readSmall(res).catch(() => Buffer.alloc(0));
        if (res.statusCode === 401 && signedIn === undefined) {
          signedIn = await this.auth.answer(header(res.headers, 'www-authenticate'), u.pathname);
          continue;
        }
        throw this.auth.refused(method, u.pathname, res.statusCode, body, signedIn);
      }
      return out;
    }
    throw new UpstreamError(this.name, 'invalid', `${this.describe()} redirected more than ${MAX_REDIRECTS} times`);
  }

  /**
   * One request passed through as a client made it (the mirror's relay of pushes and sign-in):
   * no redirect followed, no sign-in of our own, no retry; the guard still checks the target.
   */
  async relay(method: string, path: string, headers: Record<string, string | string[]>, body: Readable | null, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    this.checkCutOff();
    const u = new URL(path.replace(/^\/+/, ''), this.base);
    await this.guard.check(u, undefined, 'sent this registry to');
    return undici().request(u, { method: method as Dispatcher.HttpMethod, headers, body, dispatcher: this.dispatcher, signal, highWaterMark: 1 << 20 });
  }

  /** GET a manifest by tag or digest; resolves with its bytes or rejects with UpstreamError. */
  async manifest(namespace: string, model: string, reference: string, userAgent?: string): Promise<{ bytes: Buffer; contentType?: string }> {
    const res = await this.send('GET', this.url(`v2/${namespace}/${model}/manifests/${reference}`), {
      // Every type the cache can store: it keeps a list and picks a child per client itself.
      accept: MANIFEST_TYPES.join(', '),
      // Upstreams gate model versions by the client's User-Agent (412 "requires a newer version").
      ...(userAgent ? { 'user-agent': userAgent } : {}),
    });
    const name = `${namespace}/${model}:${reference}`;
    const bytes = await this.readBody(res, MAX_MANIFEST_BYTES, `manifest ${name}`);
    const contentType = header(res.headers, 'content-type');
    if (res.status === 200) return { bytes, contentType };
    if (res.status === 404) throw new UpstreamError(this.name, 'not-found', `${this.describe()} has no manifest ${name}`, { status: 404 });
    // The body goes along for a 412, which reaches the client verbatim (as plain text).
    throw new UpstreamError(this.name, 'status', `${this.describe()} answered ${res.status} for manifest ${name}${withReason(bytes)}`, { status: res.status, body: bytes });
  }

  /** A small body whole; too large, cut off or timed out is an UpstreamError (a 502/503), never a bare error. */
  private async readBody(res: UpstreamResponse, max: number, what: string): Promise<Buffer> {
    try {
      return await readSmall(res, max);
    } catch (e) {
      if (e instanceof TooLarge) throw new UpstreamError(this.name, 'invalid', `${this.describe()} answered a ${what} larger than ${max} bytes`);
      throw this.brokeOff(e, what);
    }
  }

  /**
   * A response body that failed in transit (reset, timeout, short) as an UpstreamError naming
   * `what`; any other error (the local disk's, say) is returned as it is.
   */
  brokeOff(e: unknown, what: string): unknown {
    if (!isUndiciError(e) && (e as NodeJS.ErrnoException)?.code !== 'ECONNRESET') return e;
    return new UpstreamError(this.name, 'unreachable', `${this.describe()} broke off the ${what} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  }

  /** The size of a blob, from a HEAD (redirects followed), falling back to a one-byte ranged GET. */
  async blobSize(namespace: string, model: string, digest: string): Promise<number> {
    const target = this.url(`v2/${namespace}/${model}/blobs/${digest}`);
    const res = await this.send('HEAD', target);
    res.body.resume();
    const len = Number(header(res.headers, 'content-length'));
    if (res.status === 200 && Number.isSafeInteger(len) && len >= 0) return len;
    if (res.status === 404) throw new UpstreamError(this.name, 'not-found', `${this.describe()} has no blob ${digest}`, { status: 404 });
    // Presigned CDN URLs often refuse HEAD: ask for one byte and read the total from Content-Range.
    const g = await this.send('GET', target, { range: 'bytes=0-0' });
    dropBody(g);
    const total = /\/(\d+)$/.exec(header(g.headers, 'content-range') ?? '')?.[1];
    if (g.status === 206 && total) return Number(total);
    if (g.status === 404) throw new UpstreamError(this.name, 'not-found', `${this.describe()} has no blob ${digest}`, { status: 404 });
    throw new UpstreamError(this.name, 'status', `${this.describe()} answered ${res.status} to HEAD of blob ${digest}`, { status: res.status });
  }

  /**
   * GET bytes [start, end) of a blob. `direct` remembers the CDN URL the registry redirected to,
   * so further ranges skip the registry; it is dropped when the CDN refuses it (expired).
   */
  async blobRange(namespace: string, model: string, digest: string, start: number, end: number, direct: { url?: string }, size: number, signal?: AbortSignal): Promise<UpstreamResponse> {
    const range = { range: `bytes=${start}-${end - 1}` };
    let res: UpstreamResponse | undefined;
    if (direct.url) {
      res = await this.send('GET', direct.url, range, { direct: true, signal });
      if (res.status >= 400 && res.status !== 416) {
        dropBody(res);
        direct.url = undefined;
        res = undefined;
      }
    }
    if (!res) {
      res = await this.send('GET', this.url(`v2/${namespace}/${model}/blobs/${digest}`), range, { signal });
      if (new URL(res.url).host !== this.base.host && res.status === 206) direct.url = res.url;
    }
    const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res.headers, 'content-range') ?? '');
    const okPartial = res.status === 206 && cr && Number(cr[1]) === start && Number(cr[2]) <= end - 1;
    const okWhole = res.status === 200 && start === 0 && end === size;
    if (okPartial || okWhole) return res;
    const body = await readSmall(res).catch(() => Buffer.alloc(0));
    if (res.status === 404) throw new UpstreamError(this.name, 'not-found', `${this.describe()} has no blob ${digest}`, { status: 404 });
    throw new UpstreamError(this.name, res.status === 200 || res.status === 206 ? 'invalid' : 'status',
      `${this.describe()} answered ${res.status}${cr ? ` (${cr[0]})` : ''} to a request for bytes ${start}-${end - 1} of ${digest}${res.status >= 400 ? withReason(body) : ''}`,
      { status: res.status });
  }
}
