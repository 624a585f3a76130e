// What one client may hold of the server: connections (in total and per address) and time to
// send a request. Slow headers are Node's own headersTimeout; a request body is watched here,
// because Node's requestTimeout would also cut a long push. Responses are never timed: a slow
// reader of a 1 GiB blob is a normal client.
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { RegistryError } from '../errors.js';
import type { Limits } from '../limits.js';
import type { Logger } from '../log.js';
import { bodyPending, rawErrorResponse, sendError } from './respond.js';

/** Options for http(s).createServer: header and keep-alive timeouts, and how often Node checks them. */
export function serverOptions(l: Limits): ServerOptions {
  const headersMs = Math.round(l.headersTimeoutSeconds * 1000);
  return {
    headersTimeout: headersMs,
    // Bodies are watched by BodyWatch (an upload may take hours; only an idle one is cut).
    requestTimeout: 0,
    keepAliveTimeout: Math.round(l.keepAliveTimeoutSeconds * 1000),
    connectionsCheckingInterval: Math.min(1000, Math.max(50, headersMs / 4)),
  };
}

const refused = new WeakSet<Socket>();

/** A socket refused by the connection caps: its requests are not served. */
export function isRefused(socket: Socket): boolean {
  return refused.has(socket);
}

/**
 * Count connections in total and per remote address; past either cap, answer 503 (total) or
 * 429 (this address) and close. On TLS the refusal cannot be read before a handshake, so the
 * socket is just closed.
 */
export function capConnections(server: Server, l: Limits, tls: boolean, log: () => Logger): void {
  let total = 0;
  const perAddress = new Map<string, number>();
  // Node's own cap as a backstop, so refusing cannot itself use up the file descriptors.
  server.maxConnections = l.maxConnections + Math.max(64, l.maxConnectionsPerAddress);
  server.prependListener('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    const mine = perAddress.get(ip) ?? 0;
    let err: RegistryError | undefined;
    if (total >= l.maxConnections) {
      err = new RegistryError('UNAVAILABLE', `the registry is at its limit of ${l.maxConnections} open connections; try again shortly`, { headers: { 'Retry-After': '1' } });
    } else if (mine >= l.maxConnectionsPerAddress) {
      err = new RegistryError('TOOMANYREQUESTS', `too many open connections from ${ip} (at most ${l.maxConnectionsPerAddress}); close some and try again`, { headers: { 'Retry-After': '1' } });
    }
    if (err) {
      refused.add(socket);
      log().warn({ audit: 'refused', status: err.status, reason: err.message, ip }, 'connection refused');
      if (tls) socket.destroy();
      else socket.end(rawErrorResponse(err));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    total++;
    perAddress.set(ip, mine + 1);
    socket.once('close', () => {
      total--;
      const n = (perAddress.get(ip) ?? 1) - 1;
      if (n > 0) perAddress.set(ip, n);
      else perAddress.delete(ip);
    });
  });
}

interface Watched {
  req: IncomingMessage;
  res: ServerResponse;
  bytes: number;
  lastMove: number;
  started: number;
  /** 0: no whole-request cap (blob uploads). */
  wholeMs: number;
}

/**
 * Request bodies in flight: one that sends nothing for `bodyIdleTimeout` (or, unless it is a
 * blob upload, is not all here after `requestTimeout`) gets 408 and its connection is closed.
 * Time the server itself is not reading (the bytes wait in its buffer) does not count.
 */
export class BodyWatch {
  private readonly watched = new Set<Watched>();
  private readonly timer: NodeJS.Timeout;
  private readonly idleMs: number;
  private readonly wholeMs: number;

  constructor(l: Limits, private readonly log: () => Logger) {
    this.idleMs = Math.round(l.bodyIdleTimeoutSeconds * 1000);
    this.wholeMs = Math.round(l.requestTimeoutSeconds * 1000);
    this.timer = setInterval(() => this.sweep(), Math.min(1000, Math.max(25, this.idleMs / 4)));
    this.timer.unref();
  }

  /** Watch the body of this request, if it has one; `upload`: exempt from the whole-request cap. */
  watch(req: IncomingMessage, res: ServerResponse, upload: boolean): void {
    if (!bodyPending(req)) return;
    const now = Date.now();
    this.watched.add({ req, res, bytes: req.socket.bytesRead, lastMove: now, started: now, wholeMs: upload ? 0 : this.wholeMs });
  }

  stop(): void {
    clearInterval(this.timer);
    this.watched.clear();
  }

  private sweep(): void {
    const now = Date.now();
    for (const w of this.watched) {
      const { req, res } = w;
      // Node drops req.socket (null) once the exchange is over, e.g. an answered upload part.
      if (req.complete || !req.socket || req.socket.destroyed) {
        this.watched.delete(w);
        continue;
      }
      const bytes = req.socket.bytesRead;
      if (bytes !== w.bytes || req.readableLength > 0) {
        w.bytes = bytes;
        w.lastMove = now;
      }
      const idle = now - w.lastMove >= this.idleMs;
      if (!idle && !(w.wholeMs > 0 && now - w.started >= w.wholeMs)) continue;
      this.watched.delete(w);
      const why = idle
        ? `no request body bytes arrived for ${this.idleMs / 1000} s`
        : `the request was not complete after ${w.wholeMs / 1000} s`;
      this.log().info({ ip: req.socket.remoteAddress, method: req.method, path: (req.url ?? '').split('?')[0]!.slice(0, 300), why }, 'request timed out');
      // Node never ends a request whose response has finished, even when its socket closes:
      // end it here, or a handler reading it (and its file handle) waits for ever.
      const abort = () => req.destroy(Object.assign(new Error(why), { code: 'ECONNRESET' }));
      if (res.headersSent) {
        abort();
        req.socket.destroy();
        continue;
      }
      res.once('close', abort);
      sendError(req, res, new RegistryError('REQUEST_TIMEOUT', `${why}; the connection is closed`), this.log());
      setTimeout(() => {
        abort();
        req.socket.destroy();
      }, 1000).unref();
    }
  }
}
