// The one place that turns a thrown value into an HTTP response.
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { isRegistryError, RegistryError } from '../errors.js';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';

/**
 * On every response, set before any handler runs (a handler may widen the policy for its own
 * page, as the web catalog does): nothing is sniffed into a runnable type, and nothing served
 * here (error text, an upstream's 412, a model's files) may run script, load anything or be framed.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(res.req.method === 'HEAD' ? undefined : bytes);
}

/** A client that hung up mid-response is normal (ollama's probe GET always does). */
export function isClientGone(e: unknown, res: ServerResponse): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return res.destroyed || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'EPIPE';
}

/** Does the request still have body bytes on the way (declared, and not all read)? */
export function bodyPending(req: IncomingMessage): boolean {
  if (req.complete) return false;
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** The one JSON error body. */
function errorBody(err: RegistryError): { errors: Array<Record<string, unknown>> } {
  const entry: Record<string, unknown> = { code: err.code, message: err.message };
  if (err.detail !== undefined) entry.detail = err.detail;
  return { errors: [entry] };
}

/** An error as raw HTTP/1.1 bytes, for sockets that never became a request (refused, unparsable). */
export function rawErrorResponse(err: RegistryError): string {
  const body = JSON.stringify(errorBody(err));
  const extra = Object.entries(err.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const security = Object.entries(SECURITY_HEADERS).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\nConnection: close\r\n${extra}${security}Content-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/**
 * A request Node's parser refused (unknown method, bad framing, huge headers) or whose headers
 * did not arrive in time: no request and response exist, but the client still gets the JSON
 * error of the error table, like every other refusal, on a socket that is then closed.
 */
export function sendClientError(err: NodeJS.ErrnoException, socket: Duplex, headersTimeoutSeconds: number, answer: boolean): void {
  const e = err.code === 'HPE_HEADER_OVERFLOW' ? new RegistryError('HEADERS_TOO_LARGE', 'request headers are too large')
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new RegistryError('REQUEST_TIMEOUT', `the request headers did not arrive within ${headersTimeoutSeconds} s; the connection is closed`)
      : new RegistryError('BAD_REQUEST', 'malformed HTTP request');
  if (answer && socket.writable) socket.end(rawErrorResponse(e));
  else socket.destroy();
}

export function sendError(req: IncomingMessage, res: ServerResponse, e: unknown, log: Logger): void {
  if (isClientGone(e, res)) return;
  let err: RegistryError;
  if (isRegistryError(e)) {
    err = e;
  } else {
    log.error({ err: e, method: req.method, url: req.url }, 'internal error');
    err = new RegistryError('INTERNAL', 'internal server error; the registry log has the details');
  }
  if (res.headersSent) {
    // Too late for a status: cut the connection so the client sees a failure, not a short body.
    res.destroy();
    return;
  }
  // A refusal before the body was read: close rather than wait for (and read) a body nobody wants.
  if (bodyPending(req)) {
    res.setHeader('Connection', 'close');
    if (req.socket) lingerOnClose(req.socket);
  }
  sendJson(res, err.status, errorBody(err), err.headers);
}

const LINGER_MS = 2000;

/**
 * Close a connection whose client may still be sending a body without resetting it: a close with
 * unread bytes makes the kernel send RST, and the client (ollama's Go client among them) then
 * loses the answer it was sent (a 507 for a part, a 401) and sees only "connection reset". So the
 * write side is closed first and what still arrives is read and dropped, for at most LINGER_MS.
 */
function lingerOnClose(socket: IncomingMessage['socket']): void {
  socket.destroySoon = function lingering(this: typeof socket) {
    if (this.writable) this.end();
    const stop = () => this.destroy();
    const timer = setTimeout(stop, LINGER_MS);
    timer.unref();
    this.on('data', () => {});
    this.once('end', stop);
    this.once('close', () => clearTimeout(timer));
    this.resume();
  };
}
