// Go's net/url and net/http client, as far as ollama's registry traffic depends on them: URLs
// kept as written, query encoding, the redirect policy (method/body rules, Authorization
// stripping, Referer), the transport's own Accept-Encoding: gzip and transparent decoding,
// Content-Length rules, and connection reuse (at most 2 idle connections per host; a connection
// goes back to the pool only after its body was read to the end). Every exchange is logged.
// Nothing ollama-specific lives here.
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import zlib from 'node:zlib';

/** One HTTP exchange (each redirect hop is its own entry). Header names are lower case. */
export interface RequestLog {
  method: string;
  url: string;
  /** 0 when no response arrived (see `error`). */
  status: number;
  reqHeaders: Record<string, string>;
  resHeaders: http.IncomingHttpHeaders;
  error?: string;
  /** Date.now() when the request was sent / when its response body was finished or dropped. */
  startedAt: number;
  endedAt?: number;
}

// ---- Go net/url, as far as ollama uses it ----

/** A URL kept the way Go keeps it: host as written (no case folding, default ports kept). */
export interface GoURL {
  scheme: string;
  host: string;
  /** Escaped path as written. */
  path: string;
  rawQuery: string;
  fragment: string;
}

export function parseURL(s: string): GoURL {
  let rest = s;
  let fragment = '';
  const hash = rest.indexOf('#');
  if (hash >= 0) [rest, fragment] = [rest.slice(0, hash), rest.slice(hash + 1)];
  let scheme = '';
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rest);
  if (m) [scheme, rest] = [m[1]!.toLowerCase(), rest.slice(m[0].length)];
  let rawQuery = '';
  const q = rest.indexOf('?');
  if (q >= 0) [rest, rawQuery] = [rest.slice(0, q), rest.slice(q + 1)];
  let host = '';
  if (rest.startsWith('//')) {
    const a = rest.slice(2);
    const slash = a.indexOf('/');
    const authority = slash < 0 ? a : a.slice(0, slash);
    rest = slash < 0 ? '' : a.slice(slash);
    host = authority.slice(authority.lastIndexOf('@') + 1);
  }
  return { scheme, host, path: rest, rawQuery, fragment };
}

export function formatURL(u: GoURL): string {
  let s = '';
  if (u.scheme) s += `${u.scheme}:`;
  if (u.scheme || u.host) {
    if (u.host || u.path) s += '//';
    s += u.host;
  }
  if (u.path && !u.path.startsWith('/') && u.host) s += '/';
  s += u.path;
  if (u.rawQuery) s += `?${u.rawQuery}`;
  if (u.fragment) s += `#${u.fragment}`;
  return s;
}


/** Go URL.Hostname(): host without port and IPv6 brackets (case kept). */
export function hostnameOf(host: string): string {
  if (host.startsWith('[')) return host.slice(1, Math.max(1, host.indexOf(']')));
  const colon = host.indexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

function portOf(host: string): string {
  const i = host.startsWith('[') ? host.indexOf(']:') + 1 : host.indexOf(':');
  return i > 0 && host[i] === ':' ? host.slice(i + 1) : '';
}

function removeDotSegments(p: string): string {
  const out: string[] = [];
  const segs = p.split('/');
  for (const [i, seg] of segs.entries()) {
    if (seg === '.') {
      if (i === segs.length - 1) out.push('');
    } else if (seg === '..') {
      if (out.length > 1) out.pop();
      if (i === segs.length - 1) out.push('');
    } else out.push(seg);
  }
  const joined = out.join('/');
  return joined.startsWith('/') ? joined : `/${joined}`;
}

/** Go URL.ResolveReference (what resp.Location() and redirects use). */
export function resolveReference(base: GoURL, ref: GoURL): GoURL {
  if (ref.scheme || ref.host) {
    return { ...ref, scheme: ref.scheme || base.scheme, path: ref.path ? removeDotSegments(ref.path) : ref.path };
  }
  if (!ref.path && !ref.rawQuery) {
    return { ...base, fragment: ref.fragment || base.fragment };
  }
  let p = ref.path;
  if (!p) p = base.path;
  else if (!p.startsWith('/')) p = base.path.slice(0, base.path.lastIndexOf('/') + 1) + p;
  return { scheme: base.scheme, host: base.host, path: removeDotSegments(p), rawQuery: ref.rawQuery, fragment: ref.fragment };
}

// ---- Go net/url query encoding ----

/** Go url.QueryEscape: everything but A-Z a-z 0-9 - _ . ~ is %XX-escaped (upper case), space → '+'. */
export function goQueryEscape(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Go url.ParseQuery (pairs in order; pairs with ';' or bad escapes are dropped, as Go does). */
export function goParseQuery(raw: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of raw.split('&')) {
    if (part === '' || part.includes(';')) continue;
    const eq = part.indexOf('=');
    const k = eq === -1 ? part : part.slice(0, eq);
    const v = eq === -1 ? '' : part.slice(eq + 1);
    try {
      out.push([decodeURIComponent(k.replace(/\+/g, ' ')), decodeURIComponent(v.replace(/\+/g, ' '))]);
    } catch {
      // Go's ParseQuery skips a pair it cannot unescape.
    }
  }
  return out;
}

/** Go url.Values.Encode: keys sorted (bytewise), values of one key in insertion order. */
export function goEncodeValues(pairs: Array<[string, string]>): string {
  const byKey = new Map<string, string[]>();
  for (const [k, v] of pairs) {
    const list = byKey.get(k) ?? [];
    list.push(v);
    byKey.set(k, list);
  }
  const keys = [...byKey.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return keys.flatMap((k) => byKey.get(k)!.map((v) => `${goQueryEscape(k)}=${goQueryEscape(v)}`)).join('&');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- errors ----

/** os.ErrNotExist, as makeRequestWithRetry returns it for a 404. */
export class ErrNotExist extends Error {
  constructor() {
    super('file does not exist');
  }
}

/** The operation's context was cancelled or its deadline passed. */
export class CanceledError extends Error {
  constructor(msg = 'context canceled') {
    super(msg);
  }
}

/** Go's *url.Error text: `Get "http://…": <err>`. */
function urlError(method: string, url: string, err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  if (e instanceof CanceledError) return e;
  const op = method[0]! + method.slice(1).toLowerCase();
  return Object.assign(new Error(`${op} "${url}": ${e.message}`), { cause: e });
}

// ---- transport (Go http.Transport + http.Client) ----

export interface TransportOptions {
  log: RequestLog[];
  /** `host[:port]` (as in URLs) or hostname → `ip[:port]` to connect to instead (a DNS override; the port defaults to the URL's). */
  connectTo?: Record<string, string>;
  /** Extra CA certificates for HTTPS (stands in for the OS trust store). */
  ca?: string | Buffer | Array<string | Buffer>;
}

/** Go's http.DefaultMaxIdleConnsPerHost: idle keep-alive connections kept per host; more are closed. */
export const MAX_IDLE_CONNS_PER_HOST = 2;

export class Transport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxFreeSockets: MAX_IDLE_CONNS_PER_HOST });
  private readonly httpsAgent: https.Agent;
  constructor(readonly opts: TransportOptions) {
    this.httpsAgent = new https.Agent({ keepAlive: true, maxFreeSockets: MAX_IDLE_CONNS_PER_HOST, ...(opts.ca ? { ca: opts.ca } : {}) });
  }
  agent(scheme: string): http.Agent {
    return scheme === 'https' ? this.httpsAgent : this.httpAgent;
  }
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** A request body: a rewindable buffer (Go sets GetBody) or a one-shot stream (Go cannot replay it). */
export type ReqBody = { kind: 'buffer'; data: Buffer } | { kind: 'stream'; length: number; open(): Readable };

export interface GoResponse {
  status: number;
  /** Go's resp.Status text after the code, e.g. "Accepted". */
  statusText: string;
  /** Headers as Go's caller sees them (gzip-decoded responses lose Content-Encoding/Length). */
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  /** URL of the request that produced this response (after redirects). */
  url: GoURL;
  method: string;
  body: Readable;
  message: http.IncomingMessage;
}

/** First value of a response header (Go's Header.Get), from the raw headers. */
export function headerGet(resp: GoResponse, name: string): string {
  const lower = name.toLowerCase();
  for (let i = 0; i < resp.rawHeaders.length; i += 2) {
    if (resp.rawHeaders[i]!.toLowerCase() === lower) return resp.rawHeaders[i + 1]!;
  }
  return '';
}

export async function readAll(resp: GoResponse): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of resp.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The whole body has been read by the caller (Go's body reader has returned io.EOF). */
function readToEnd(resp: GoResponse): boolean {
  const m = resp.message;
  return m.readableEnded || (m.complete && m.readableLength === 0 && (resp.body === m || resp.body.readableLength === 0));
}

/**
 * resp.Body.Close(): the connection goes back to the idle pool when there was no body (HEAD,
 * Content-Length: 0) or it was read to the end; otherwise Go hangs up, however small the unread
 * rest is (even when its bytes have already arrived).
 */
export function discard(resp: GoResponse): void {
  if (resp.method === 'HEAD' || resp.headers['content-length'] === '0' || readToEnd(resp)) resp.message.resume();
  else resp.message.destroy();
}

/** What Go's client does with a redirect's body before following it: read up to 2 KiB, then Close. */
async function drainRedirect(resp: GoResponse): Promise<void> {
  const len = Number(resp.headers['content-length'] ?? -1);
  if (resp.method !== 'HEAD' && (len < 0 || len <= 2048)) {
    let n = 0;
    const it = resp.body.iterator({ destroyOnReturn: false });
    try {
      for await (const c of it) {
        n += (c as Buffer).length;
        if (n >= 2048) break;
      }
    } catch {
      // a broken redirect body does not stop the redirect
    }
  }
  discard(resp);
}

function roundTrip(t: Transport, method: string, url: GoURL, headers: Record<string, string>, body: ReqBody | undefined, signal?: AbortSignal): Promise<GoResponse> {
  if (url.scheme !== 'http' && url.scheme !== 'https') return Promise.reject(new Error(`unsupported protocol scheme "${url.scheme}"`));
  if (!url.host) return Promise.reject(new Error('http: no Host in request URL'));
  if (signal?.aborted) return Promise.reject(new CanceledError());
  const hostname = hostnameOf(url.host);
  const target = t.opts.connectTo?.[url.host] ?? t.opts.connectTo?.[hostname];
  const connectHost = target ? hostnameOf(target) : hostname;
  const connectPort = Number((target && portOf(target)) || portOf(url.host) || (url.scheme === 'https' ? 443 : 80));

  const h: Record<string, string> = { Host: url.host, 'User-Agent': 'Go-http-client/1.1', ...headers };
  delete h['Content-Length'];
  const length = body ? (body.kind === 'buffer' ? body.data.length : body.length) : 0;
  if (length > 0 || ['POST', 'PUT', 'PATCH'].includes(method)) h['Content-Length'] = String(length);
  // Go's transport asks for gzip itself, and then decodes it, unless Range is set or it's a HEAD.
  const addedGzip = method !== 'HEAD' && !h.Range && !h['Accept-Encoding'];
  if (addedGzip) h['Accept-Encoding'] = 'gzip';

  const entry: RequestLog = {
    method,
    url: formatURL({ ...url, fragment: '' }),
    status: 0,
    reqHeaders: Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v])),
    resHeaders: {},
    startedAt: Date.now(),
  };
  t.opts.log.push(entry);

  return new Promise((resolve, reject) => {
    const mod = url.scheme === 'https' ? https : http;
    const req = mod.request({
      host: connectHost,
      port: connectPort,
      method,
      path: (url.path || '/') + (url.rawQuery ? `?${url.rawQuery}` : ''),
      headers: h,
      agent: t.agent(url.scheme),
      // TLS: SNI and the certificate check use the URL's host, wherever connectTo points.
      ...(url.scheme === 'https' && !isIP(hostname) ? { servername: hostname } : {}),
      ...(url.scheme === 'https' ? { checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(hostname, cert) } : {}),
    });
    const onAbort = () => req.destroy(new CanceledError());
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e) => {
      signal?.removeEventListener('abort', onAbort);
      // An error after the response (e.g. the server hung up mid-upload) is not this request's failure.
      if (entry.status === 0) entry.error ??= e.message;
      entry.endedAt ??= Date.now();
      reject(signal?.aborted ? new CanceledError() : e);
    });
    req.on('response', (res) => {
      signal?.removeEventListener('abort', onAbort);
      entry.status = res.statusCode ?? 0;
      entry.resHeaders = res.headers;
      res.once('close', () => { entry.endedAt = Date.now(); });
      // Cancelling the context also aborts a body being read.
      const onBodyAbort = () => res.destroy(new CanceledError());
      signal?.addEventListener('abort', onBodyAbort, { once: true });
      res.once('close', () => signal?.removeEventListener('abort', onBodyAbort));
      const headers = { ...res.headers };
      let bodyStream: Readable = res;
      if (addedGzip && String(res.headers['content-encoding'] ?? '').toLowerCase() === 'gzip') {
        delete headers['content-encoding'];
        delete headers['content-length'];
        bodyStream = pipeline(res, zlib.createGunzip(), () => {});
      }
      const resp: GoResponse = { status: entry.status, statusText: res.statusMessage ?? '', headers, rawHeaders: res.rawHeaders, url, method, body: bodyStream, message: res };
      // No body (Go's NoBody): the connection is back in the idle pool before the caller sees the response.
      if (method === 'HEAD' || res.headers['content-length'] === '0' || res.statusCode === 204 || res.statusCode === 304) {
        res.once('end', () => resolve(resp)).once('close', () => resolve(resp)).resume();
      } else resolve(resp);
    });
    if (!body) req.end();
    else if (body.kind === 'buffer') req.end(body.data);
    else {
      const src = body.open();
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    }
  });
}

/** Go CheckRedirect: follow, stop and return the redirect response (ErrUseLastResponse), or fail. */
export type CheckRedirect = (next: GoURL, via: GoURL[]) => 'follow' | 'useLast' | Error;

const defaultCheckRedirect: CheckRedirect = (_next, via) => (via.length >= 10 ? new Error('stopped after 10 redirects') : 'follow');

const isDomainOrSubdomain = (sub: string, parent: string) => sub === parent || (sub.endsWith(`.${parent}`) && !sub.includes(':'));

/** Go http.Client.Do: sends the request and follows redirects like net/http does. */
export async function goDo(
  t: Transport,
  req: { method: string; url: GoURL; headers?: Record<string, string>; body?: ReqBody },
  opts: { checkRedirect?: CheckRedirect; signal?: AbortSignal } = {},
): Promise<GoResponse> {
  const via: GoURL[] = [];
  let { method, url, body } = req;
  let headers = { ...req.headers };
  for (;;) {
    let resp: GoResponse;
    try {
      resp = await roundTrip(t, method, url, headers, body, opts.signal);
    } catch (e) {
      throw urlError(req.method, formatURL(url), e);
    }
    via.push(url);
    let nextMethod = method;
    let includeBody = true;
    if (resp.status === 307 || resp.status === 308) {
      // A body Go cannot rewind (no GetBody) makes it hand the 307/308 back to the caller.
      if (body?.kind === 'stream' && body.length !== 0) return resp;
    } else if ([301, 302, 303].includes(resp.status)) {
      includeBody = false;
      if (method !== 'GET' && method !== 'HEAD') nextMethod = 'GET';
    } else {
      return resp;
    }
    const loc = headerGet(resp, 'Location');
    if (!loc) return resp;
    const next = resolveReference(url, parseURL(loc));
    const nextHeaders = { ...headers };
    if (!includeBody) body = undefined;
    if (!isDomainOrSubdomain(hostnameOf(next.host), hostnameOf(url.host))) {
      for (const k of ['Authorization', 'Www-Authenticate', 'Cookie', 'Cookie2']) delete nextHeaders[k];
    }
    if (!(url.scheme === 'https' && next.scheme === 'http')) nextHeaders.Referer = formatURL({ ...url, fragment: '' });
    const decision = (opts.checkRedirect ?? defaultCheckRedirect)(next, via);
    if (decision === 'useLast') return resp;
    await drainRedirect(resp);
    if (decision instanceof Error) throw urlError(req.method, loc, decision);
    [method, url, headers] = [nextMethod, next, nextHeaders];
  }
}
