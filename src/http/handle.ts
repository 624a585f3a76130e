// Serving a request without a network socket: `handle(request)` writes it into an in-memory
// connection of an http.Server that never listens, so it passes Node's own HTTP parser and the
// same pipeline as a request from the network, and reads the answer back with Node's client.
import http, { type IncomingHttpHeaders } from 'node:http';
import { Duplex, Readable } from 'node:stream';
import type { App } from '../app.js';
import { serverOptions } from './connections.js';
import { createHandler } from './pipeline.js';
import type { RouteDef } from './route-def.js';

export interface Request {
  method?: string;
  /** Path and query, e.g. /v2/library/gemma2/manifests/2b. */
  url: string;
  /** Host defaults to registry.test (it picks the site). */
  headers?: Record<string, string>;
  body?: Buffer | string | Readable;
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as it arrives (not read yet). */
  body: Readable;
}

/** One end of an in-memory connection: what is written to it is read from its peer, with back-pressure. */
class End extends Duplex {
  peer!: End;
  /** The peer's write waiting for this end to be read. */
  private blocked?: () => void;

  override _read(): void {
    const go = this.blocked;
    this.blocked = undefined;
    go?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    if (this.peer.push(chunk)) done();
    else this.peer.blocked = () => done();
  }

  override _final(done: () => void): void {
    this.peer.push(null);
    done();
  }

  override _destroy(err: Error | null, done: (e: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.destroy();
    done(err);
  }
}

function connection(): [End, End] {
  const a = new End({ allowHalfOpen: true });
  const b = new End({ allowHalfOpen: true });
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** The entry point for requests without a socket, on `app` (and the default routes or `routes`). */
export function inMemory(app: App, routes?: RouteDef[]): (request: Request) => Promise<Response> {
  const handler = createHandler(app, routes);
  const server = http.createServer(serverOptions(app.config.limits), (req, res) => void handler(req, res));
  return (request) => new Promise<Response>((resolve, reject) => {
    const [client, served] = connection();
    server.emit('connection', served);
    const req = http.request({
      method: request.method ?? 'GET',
      path: request.url,
      headers: { Host: 'registry.test', Connection: 'close', ...request.headers },
      createConnection: () => client as unknown as import('node:net').Socket,
    }, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }));
    req.once('error', reject);
    const body = request.body;
    if (body instanceof Readable) {
      req.flushHeaders(); // the headers go now, not with the first body byte
      body.pipe(req);
    }
    else req.end(body);
  });
}

/** Read a whole (small) response body as text. */
export async function textOf(res: Response): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
