// A counting, fault-injecting HTTP front for an upstream registry, written for the cache tests.
// It listens on a "registry" address (127.0.0.1) and a "CDN" address (127.0.0.2), forwards to a
// real registry, counts the blob body bytes it sends, and on purpose can: answer blob requests
// with a 307 to the CDN host (as registry.ollama.ai does), cut the connection mid-body, flip
// bytes, stall, answer 5xx, throttle to a WAN rate shared by all connections, or require a
// Bearer token from a token endpoint (as a CNCF registry does for anonymous pulls).
//
// With `like: 'registry.ollama.ai'` it behaves as protocol/ollama.md (§2.4, §9) says that registry
// does: blob GET/HEAD answer 307 to a presigned CDN URL; manifests come as text/plain, without
// Docker-Content-Digest or Content-Length; `/v2/` is 404. Always, as real CDNs and token
// endpoints do: the CDN host refuses HEAD on a presigned (GET-signed) URL and any URL without a
// signature (403), and each token is new and good only for the repositories it was asked for.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before } from 'node:test';
import { startTestRegistry, type TestRegistry } from './server.js';

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
  /** Require `Authorization: Bearer <token>` on /v2/ (token from /token, covering the repository). */
  requireToken: boolean;
  /** Tokens handed out, each with the repositories it may pull. */
  tokens: Map<string, Set<string>>;
  /** Make it unreachable: connections are refused until `up()`. */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

/** S3/R2's answer to a presigned URL used for another method, or without a valid signature. */
const CDN_REFUSAL = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>' +
  '<Message>The request signature we calculated does not match the signature you provided.</Message></Error>';

/** The repositories (`ns/model`) a token request's `scope` parameters ask to pull. */
function pullScopes(query: URLSearchParams): Set<string> {
  const repos = new Set<string>();
  for (const s of query.getAll('scope')) {
    for (const word of s.split(' ')) {
      const m = /^repository:([^:]+):(.+)$/.exec(word);
      if (m && m[2]!.split(',').includes('pull')) repos.add(m[1]!);
    }
  }
  return repos;
}

export async function startFaultUpstream(target: string, opts: { rate?: number; redirectBlobs?: boolean; like?: 'registry.ollama.ai' } = {}): Promise<FaultUpstream> {
  const ollamaAi = opts.like === 'registry.ollama.ai';
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
    if (which === 'cdn' && (req.method === 'HEAD' || !/[?&]X-Amz-Signature=/.test(req.url ?? ''))) {
      res.writeHead(403, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(CDN_REFUSAL) });
      res.end(req.method === 'HEAD' ? undefined : CDN_REFUSAL);
      return;
    }
    if (which === 'registry' && path.startsWith('/token')) {
      const token = randomBytes(16).toString('hex');
      fu.tokens.set(token, pullScopes(new URL(path, 'http://x').searchParams));
      const body = JSON.stringify({ token, expires_in: 300 });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const repo = /^\/v2\/(.+?)\/(manifests|blobs)\//.exec(path)?.[1];
    if (which === 'registry' && fu.requireToken && path.startsWith('/v2/')) {
      const granted = fu.tokens.get(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
      if (!granted || (repo && !granted.has(repo))) {
        const host = `127.0.0.1:${(regSrv.address() as AddressInfo).port}`;
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="http://${host}/token",service="test-registry"${repo ? `,scope="repository:${repo}:pull"` : ''}`, 'Content-Type': 'application/json' });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
    }
    if (which === 'registry' && ollamaAi && (path === '/v2/' || path === '/v2')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 19 });
      res.end('404 page not found\n');
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
      const answer = { ...ur.headers };
      if (ollamaAi && which === 'registry' && /\/manifests\/[^/]+$/.test(path) && ur.statusCode === 200) {
        // registry.ollama.ai: text/plain (#6470), no digest header, no length (chunked).
        answer['content-type'] = 'text/plain; charset=utf-8';
        delete answer['docker-content-digest'];
        delete answer['content-length'];
      }
      res.writeHead(ur.statusCode ?? 502, answer);
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
    redirectBlobs: opts.redirectBlobs ?? ollamaAi,
    rate: opts.rate ?? 0,
    requireToken: false,
    tokens: new Map(),
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

/**
 * A test registry as the upstream behind a fault front, shared by every test of a file: started
 * before them, closed after. Its fields are set once the file's `before` hook ran.
 */
export function frontedUpstream(): { upstream: TestRegistry; front: FaultUpstream } {
  const link = {} as { upstream: TestRegistry; front: FaultUpstream };
  before(async () => {
    link.upstream = await startTestRegistry();
    link.front = await startFaultUpstream(link.upstream.url);
  });
  after(async () => {
    await link.front.close();
    await link.upstream.close();
  });
  return link;
}
