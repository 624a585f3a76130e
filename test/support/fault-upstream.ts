// A counting, fault-injecting HTTP front for an upstream registry, written for the cache tests.
// It listens on a "registry" address (127.0.0.1) and a "CDN" address (127.0.0.2), forwards to a
// real registry, counts the blob body bytes it sends, and on purpose can: answer blob requests
// with a 307 to the CDN host (as registry.ollama.ai does), cut the connection mid-body, flip
// bytes, stall, answer 5xx, throttle to a WAN rate shared by all connections, or require a
// Bearer token from a token endpoint (as a CNCF registry does for anonymous pulls).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | { kind: 'drop'; after: number }
  | { kind: 'corrupt' }
  | { kind: 'stall'; after: number }
  | { kind: 'status'; status: number; body?: string; contentType?: string };

export interface SeenRequest {
  host: 'registry' | 'cdn';
  method: string;
  path: string;
  range?: string;
  ua?: string;
  auth?: string;
}

export interface FaultUpstream {
  url: string;
  cdnUrl: string;
  requests: SeenRequest[];
  /** Blob body bytes sent (both hosts) since the start or the last reset. */
  blobBytes(): number;
  reset(): void;
  /** Decide a fault for a request (called for every request, registry and CDN). */
  fault?: (r: SeenRequest, index: number) => Fault | undefined;
  /** Blob GET/HEAD on the registry host answer 307 to the CDN host. */
  redirectBlobs: boolean;
  /** Bytes per second for all bodies together (a shared WAN link); 0 = unthrottled. */
  rate: number;
  /** Require `Authorization: Bearer <token>` on /v2/ (token from /token). */
  requireToken: boolean;
  /** Make it unreachable: connections are refused until `up()`. */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

const TOKEN = 'test-token-123';

export async function startFaultUpstream(target: string, opts: { rate?: number; redirectBlobs?: boolean } = {}): Promise<FaultUpstream> {
  const t = new URL(target);
  let bytes = 0;
  let nextFree = 0;
  const sockets = new Set<import('node:net').Socket>();
  const throttle = async (n: number) => {
    if (!fu.rate) return;
    // Time owed by oversleeping timers is caught up (a burst of at most 100 ms), so the
    // average rate is the configured one even on a busy machine.
    const now = Date.now();
    nextFree = Math.max(now - 100, nextFree) + (n / fu.rate) * 1000;
    const wait = nextFree - now;
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  };

  const handler = (which: 'registry' | 'cdn') => (req: IncomingMessage, res: ServerResponse) => {
    let path = req.url ?? '/';
    if (which === 'cdn') path = path.replace(/^\/cdn/, '').replace(/\?.*$/, '');
    const seen: SeenRequest = { host: which, method: req.method ?? 'GET', path, range: req.headers.range, ua: req.headers['user-agent'], auth: req.headers.authorization };
    if (path.startsWith('/__link/')) {
      // Control endpoints for the benchmark, which runs this front in its own process.
      const q = new URL(path, 'http://x');
      if (q.pathname === '/__link/reset') fu.reset();
      if (q.pathname === '/__link/rate') fu.rate = Number(q.searchParams.get('bps') ?? 0);
      const body = JSON.stringify({ bytes, requests: fu.requests.length, rate: fu.rate });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const index = fu.requests.push(seen) - 1;
    if (which === 'registry' && path.startsWith('/token')) {
      const body = JSON.stringify({ token: TOKEN, expires_in: 300 });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (which === 'registry' && fu.requireToken && path.startsWith('/v2/') && req.headers.authorization !== `Bearer ${TOKEN}`) {
      const host = `127.0.0.1:${(regSrv.address() as AddressInfo).port}`;
      const scope = /^\/v2\/(.+?)\/(manifests|blobs)\//.exec(path)?.[1];
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="http://${host}/token",service="test-registry"${scope ? `,scope="repository:${scope}:pull"` : ''}`, 'Content-Type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    const isBlob = /\/blobs\/sha256:[0-9a-f]{64}$/.test(path);
    if (which === 'registry' && isBlob && fu.redirectBlobs) {
      res.writeHead(307, { Location: `${fu.cdnUrl}/cdn${path}?X-Amz-Signature=abc`, 'Content-Length': 0 });
      res.end();
      return;
    }
    const fault = fu.fault?.(seen, index);
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'Content-Type': fault.contentType ?? 'text/plain' });
      res.end(fault.body ?? `injected ${fault.status}`);
      return;
    }
    const headers = { ...req.headers, host: t.host };
    delete headers.authorization;
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path, headers, agent: false }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      const counted = isBlob && req.method === 'GET';
      let sent = 0;
      let stopped = false;
      let writing: Promise<void> = Promise.resolve();
      ur.on('data', (chunk: Buffer) => {
        ur.pause();
        writing = writing.then(() => onChunk(chunk));
      });
      const onChunk = async (chunk: Buffer) => {
        if (stopped) return;
        let c = chunk;
        if (fault?.kind === 'drop' || fault?.kind === 'stall') {
          const left = fault.after - sent;
          if (left <= 0 || c.length >= left) {
            c = c.subarray(0, Math.max(0, left));
            stopped = true;
          }
        }
        if (fault?.kind === 'corrupt' && c.length > 0) {
          c = Buffer.from(c);
          c[0] = c[0]! ^ 0xff;
        }
        for (let off = 0; off < c.length; off += 256 << 10) {
          const piece = c.subarray(off, off + (256 << 10));
          await throttle(piece.length);
          if (res.destroyed) return;
          if (!res.write(piece)) await new Promise((r) => res.once('drain', r));
          sent += piece.length;
          if (counted) bytes += piece.length;
        }
        if (stopped) {
          ur.destroy();
          if (fault?.kind === 'drop') res.socket?.destroy();
          // stall: keep the connection open and silent until the client gives up
          return;
        }
        ur.resume();
      };
      ur.on('end', () => {
        void writing.then(() => {
          if (!stopped) res.end();
        });
      });
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  };

  const track = (s: http.Server) => s.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  const regSrv = track(http.createServer(handler('registry')));
  const cdnSrv = track(http.createServer(handler('cdn')));
  const listen = (s: http.Server, host: string, port = 0) => new Promise<void>((r) => s.listen(port, host, () => r()));
  await listen(regSrv, '127.0.0.1');
  await listen(cdnSrv, '127.0.0.2');
  const regPort = (regSrv.address() as AddressInfo).port;
  const fu: FaultUpstream = {
    url: `http://127.0.0.1:${regPort}`,
    cdnUrl: `http://127.0.0.2:${(cdnSrv.address() as AddressInfo).port}`,
    requests: [],
    blobBytes: () => bytes,
    reset() {
      bytes = 0;
      fu.requests.length = 0;
    },
    redirectBlobs: opts.redirectBlobs ?? false,
    rate: opts.rate ?? 0,
    requireToken: false,
    async down() {
      await new Promise<void>((r) => {
        regSrv.close(() => r());
        for (const s of sockets) s.destroy();
      });
    },
    async up() {
      await listen(regSrv, '127.0.0.1', regPort);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([regSrv, cdnSrv].map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
    },
  };
  return fu;
}
