// The relay: what the mirror does not serve itself (pushes and the upstream's sign-in) goes to the
// intercepted host's real upstream unchanged, streamed both ways. Storing a push here would make
// `ollama push user/model` to ollama.com land silently on the LAN; answering the token request
// here would sign the user in to the wrong registry. The token request reaches the upstream with
// the same path and query, because ollama signs that exact URL with the user's key.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { SECURITY_HEADERS, sendError } from '../http/respond.js';
import { TOKEN_PATH } from '../http/auth.js';
import type { Upstream } from '../upstream/client.js';

/** A push part is at most 1 000 000 000 bytes (ollama's maxUploadPartSize); a little room above. */
export const MAX_RELAY_BODY = 1100 * 1000 * 1000;
/** Relayed answers are short JSON (upload sessions, tokens, errors). */
export const MAX_RELAY_ANSWER = 1 << 20;

// Hop-by-hop headers (RFC 9110 §7.6.1) and what the connection to the upstream sets itself.
// Host is kept: the upstream sees the name the client used (its realm and signatures use it).
const HOP = new Set(['connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * Requests for an intercepted host that go upstream: every write, the upstream's sign-in, and a
 * HEAD that carries credentials: once a push has signed in, ollama sends the upstream's token
 * with its "is this blob there?" checks, and only the upstream can answer those (a pull never
 * holds a token here: the mirror serves it without a challenge).
 */
export function isRelayed(req: IncomingMessage): boolean {
  if (req.method === 'HEAD') return req.headers.authorization !== undefined;
  if (req.method !== 'GET') return true;
  // registry.ollama.ai's realm is https://registry.ollama.ai/v2/token (ollama requires the realm
  // on the registry's own host since v0.14.3), so its token requests arrive here.
  return (req.url ?? '').split('?')[0] === TOKEN_PATH;
}

function passHeaders(raw: string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP.has(k)) continue;
    const prev = out[k];
    out[k] = prev === undefined ? raw[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), raw[i + 1]!];
  }
  return out;
}

/** Counts bytes through, fails past `max`, and tells `moved` on each chunk (the idle timer). */
class Meter extends Transform {
  bytes = 0;

  constructor(private readonly max: number, private readonly what: string, private readonly moved: () => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.moved();
    if (this.bytes > this.max) return cb(new RegistryError('TOO_LARGE', `${this.what} is larger than ${this.max} bytes; not relayed`));
    cb(null, chunk);
  }
}

/**
 * The upstream's redirect goes to the client only where the stock client expects one: the 307
 * "redirect upload" answer to a PATCH that asked for it (X-Redirect-Uploads), whose Location the
 * client PUTs the part to (`permit` lets that host be tunnelled), or a hop back to this host.
 */
function checkRedirect(req: IncomingMessage, host: string, status: number, location: string | undefined, permit: (hostPort: string) => void): void {
  let to: URL;
  try {
    to = new URL(location ?? '', `https://${host}/`);
  } catch {
    throw new RegistryError('UPSTREAM_FAILED', `upstream ${host} answered ${status} with a Location that is not a URL; not relayed`);
  }
  if (!location) throw new RegistryError('UPSTREAM_FAILED', `upstream ${host} answered ${status} without a Location; not relayed`);
  if (to.protocol === 'https:' && to.hostname === host && (to.port === '' || to.port === '443')) return;
  const redirectUpload = status === 307 && req.method === 'PATCH' && req.headers['x-redirect-uploads'] !== undefined;
  if (redirectUpload && to.protocol === 'https:') {
    permit(`${to.hostname.toLowerCase()}:${to.port || 443}`);
    return;
  }
  throw new RegistryError('UPSTREAM_FAILED', `upstream ${host} redirected ${req.method} to ${`${to.protocol}//${to.host}`.slice(0, 120)}, which ollama does not expect here; not relayed`);
}

export interface RelayOptions {
  /** The intercepted host the client named (the site). */
  host: string;
  upstream: Upstream | undefined;
  offline: boolean;
  /** No byte either way for this long ends the relay (the upstream's timeout). */
  idleMs: number;
  /** Allow CONNECT to this host:port for a while (the target of a redirect upload). */
  permit: (hostPort: string) => void;
  log: Logger;
}

export async function relay(req: IncomingMessage, res: ServerResponse, o: RelayOptions): Promise<void> {
  const what = `${req.method} ${(req.url ?? '').split('?')[0]!.slice(0, 200)}`;
  try {
    if (o.offline) throw new RegistryError('UNAVAILABLE', `offline: ${o.host} cannot be reached, so pushes and sign-in to it are not relayed`);
    if (!o.upstream) throw new RegistryError('UNAVAILABLE', `no upstream is configured for ${o.host}, so pushes and sign-in to it cannot be relayed`);
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > MAX_RELAY_BODY) throw new RegistryError('TOO_LARGE', `a request body of ${length} bytes is larger than ${MAX_RELAY_BODY}; not relayed`);
  } catch (e) {
    return sendError(req, res, e, o.log);
  }
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const moved = () => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(new RegistryError('UPSTREAM_FAILED', `${o.upstream!.describe()} did not answer ${what} within ${o.idleMs / 1000} s`)), o.idleMs);
  };
  moved();
  res.once('close', () => abort.abort());
  try {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    const up = new Meter(MAX_RELAY_BODY, 'the request body', moved);
    const sending = hasBody ? pipeline(req, up, { signal: abort.signal }) : null;
    sending?.catch((e: unknown) => abort.abort(e));
    const answer = await o.upstream.relay(req.method!, req.url!, passHeaders(req.rawHeaders), hasBody ? up : null, abort.signal);
    moved();
    const location = answer.headers.location as string | undefined;
    if (answer.statusCode >= 300 && answer.statusCode < 400 && answer.statusCode !== 304) {
      try {
        checkRedirect(req, o.host, answer.statusCode, location, o.permit);
      } catch (e) {
        answer.body.destroy();
        throw e;
      }
    }
    const headers = passHeaders(Object.entries(answer.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, x]) : v === undefined ? [] : [k, String(v)])));
    res.writeHead(answer.statusCode, { ...headers, ...SECURITY_HEADERS });
    await pipeline(answer.body, new Meter(MAX_RELAY_ANSWER, `the answer of upstream ${o.host}`, moved), res, { signal: abort.signal });
    await sending;
    o.log.info({ host: o.host, method: req.method, status: answer.statusCode }, 'mirror: relayed upstream');
  } catch (e) {
    const reason = abort.signal.aborted && abort.signal.reason instanceof RegistryError ? abort.signal.reason : e;
    const err = reason instanceof RegistryError ? reason
      : new RegistryError('UPSTREAM_FAILED', `could not relay ${what} to ${o.upstream!.describe()}: ${(reason as Error).message ?? reason}`.slice(0, 400));
    o.log.warn({ host: o.host, method: req.method, err: err.message }, 'mirror: relay failed');
    sendError(req, res, err, o.log);
  } finally {
    clearTimeout(timer);
  }
}
