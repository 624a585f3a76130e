// The mirror's TLS front: one TLS endpoint for the intercepted hosts (proxy mode: reached
// through CONNECT on the main port; DNS mode: its own listener, e.g. :443), feeding the same
// request handler as the plain registry. CONNECT to any other target is tunnelled only when it is
// on the allow-list and resolves to public addresses; everything else is refused with a reason
// Go shows to the user (it prints the status line's reason phrase). Never an open relay.
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { SECURITY_HEADERS, sendError } from '../http/respond.js';
import type { SiteTable } from '../http/sites.js';
import { isLocalAddress } from '../upstream/guard.js';
import type { Upstream } from '../upstream/client.js';
import type { MirrorConfig } from './config.js';
import { isRelayed, relay } from './relay.js';
import { serveSelftest } from './selftest.js';

type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface Mirror {
  front: https.Server;
  /** https://host:port of the DNS-mode listener, when there is one. */
  url?: string;
  close(): Promise<void>;
}

/** How long the target of a redirect upload may be tunnelled after the upstream named it. */
const PERMIT_MS = 3600_000;

export interface MirrorOptions {
  /** The main server's timeouts, so the TLS front has the same connection policy. */
  serverOptions?: https.ServerOptions;
  /** The upstream of an intercepted host (the relay's target). */
  upstreamFor: (host: string) => Upstream | undefined;
}

function refuse(socket: Duplex, status: number, reason: string): void {
  // One line of ASCII: it becomes Go's error text ("Error: … ollama-registry: …").
  const phrase = `ollama-registry: ${reason}`.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
  socket.end(`HTTP/1.1 ${status} ${phrase}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

function splitTarget(authority: string | undefined): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(authority ?? '');
  const port = m ? Number(m[3]) : NaN;
  return m && port > 0 && port <= 65535 ? { host: (m[1] ?? m[2]!).toLowerCase(), port } : null;
}

// ca.ts (@peculiar/x509 and reflect-metadata) is loaded only with the mirror, which checks its certificate here.
async function loadLeaf(cfg: MirrorConfig): Promise<{ cert: Buffer; key: Buffer }> {
  const { leafProblem, rootProblem } = await import('./ca.js');
  const certPath = path.join(cfg.dir, 'leaf.pem');
  const keyPath = path.join(cfg.dir, 'leaf.key');
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(certPath);
    key = readFileSync(keyPath);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new Error(`mirror: cannot read the certificate in ${cfg.dir} (${why}); make it with: ollama-registry ca init --dir ${cfg.dir}`, { cause: e });
  }
  const problem = leafProblem(cert.toString(), cfg.hosts);
  if (problem) {
    // A leaf that misses a host: renewing it helps only if the CA may vouch for that host.
    let root: string | null = null;
    try {
      root = rootProblem(readFileSync(path.join(cfg.dir, 'ca.pem'), 'utf8'), cfg.hosts, cfg.dir);
    } catch {
      // no ca.pem here (kept elsewhere): the leaf's own problem is the message
    }
    const renew = /does not name/.test(problem) ? ` (renew it: ollama-registry ca init --renew-leaf --dir ${cfg.dir} --host ${cfg.hosts.join(' --host ')})` : '';
    throw new Error(`mirror: ${certPath}: ${root ?? problem + renew}`);
  }
  return { cert, key };
}

/** `sites`: the site table the handler answers by (the intercepted hosts are its sites). */
export async function startMirror(server: Server, handler: RequestHandler, cfg: MirrorConfig, sites: SiteTable, offline: boolean, log: Logger,
  opts: MirrorOptions): Promise<Mirror> {
  const hosts = new Set(sites.names());
  // host:port → until when: the upstream's redirect-upload targets (its storage host).
  const permits = new Map<string, number>();
  const permit = (hostPort: string) => {
    if (permits.size > 1000) permits.clear();
    permits.set(hostPort, Date.now() + PERMIT_MS);
  };
  const permitted = (hostPort: string) => (permits.get(hostPort) ?? 0) > Date.now();
  const { cert, key } = await loadLeaf(cfg);
  const context = tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  const front = https.createServer({
    ...opts.serverOptions, cert, key, minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'],
    // Only the intercepted names get a certificate: a handshake for any other name fails.
    SNICallback: (name, cb) => (hosts.has(name.toLowerCase()) ? cb(null, context) : cb(new Error(`not an intercepted host: ${name}`))),
  }, (req, res) => {
    // The front's own answers (421, the relay's) carry them too, not only the router's.
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const sni = (req.socket as TLSSocket).servername;
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (sni && host !== sni.toLowerCase()) {
      return sendError(req, res, new RegistryError('MISDIRECTED', `this connection is for ${sni}, not ${host.slice(0, 100) || 'an empty Host'}`), log);
    }
    if (isRelayed(req)) {
      const upstream = opts.upstreamFor(host);
      return void relay(req, res, { host, upstream, offline, idleMs: (upstream?.config.timeoutSeconds ?? 30) * 1000, permit, log });
    }
    try {
      if (serveSelftest(req, res, req.headers.host!)) {
        log.info({ host, method: req.method, url: req.url?.slice(0, 200) }, 'mirror: self-test model served');
        return;
      }
    } catch (e) {
      return sendError(req, res, e, log);
    }
    handler(req, res);
  });
  front.on('tlsClientError', (err) => log.debug({ err: err.message }, 'mirror: TLS handshake failed'));

  let open = 0;
  const track = (socket: Duplex) => {
    open++;
    socket.once('close', () => open--);
  };

  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const target = splitTarget(req.url);
    if (!target) return refuse(socket, 400, 'CONNECT needs host:port');
    if (open >= cfg.maxTunnels) return refuse(socket, 503, 'too many open tunnels, try again');
    const name = `${target.host}:${target.port}`;
    if (hosts.has(target.host)) {
      if (target.port !== 443) return refuse(socket, 403, `only ${target.host}:443 is served here`);
      track(socket);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) socket.unshift(head);
      front.emit('connection', socket);
      return;
    }
    if (!cfg.tunnel.includes(name) && !permitted(name)) {
      return refuse(socket, 403, `${name} is not an allowed CONNECT target (allowed: ${[...hosts].map((h) => `${h}:443`).concat(cfg.tunnel).join(', ')})`);
    }
    if (offline) return refuse(socket, 403, `offline: no tunnel to ${name}`);
    track(socket);
    void tunnel(socket, target, head, cfg, log);
  });

  let url: string | undefined;
  if (cfg.listen) {
    await new Promise<void>((resolve, reject) => {
      front.once('error', reject);
      front.listen(cfg.listen!.port, cfg.listen!.host, () => {
        front.off('error', reject);
        resolve();
      });
    });
    const a = front.address() as AddressInfo;
    url = `https://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }
  return {
    front,
    url,
    close: () => new Promise<void>((resolve) => {
      front.closeAllConnections();
      if (front.listening) front.close(() => resolve());
      else resolve();
    }),
  };
}

async function tunnel(socket: Duplex, target: { host: string; port: number }, head: Buffer, cfg: MirrorConfig, log: Logger): Promise<void> {
  let addresses: string[];
  try {
    const found = await Promise.race([
      lookup(target.host, { all: true, verbatim: true }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('DNS timed out')), 5_000).unref()),
    ]);
    addresses = found.map((a) => a.address);
  } catch (e) {
    return refuse(socket, 502, `cannot resolve ${target.host}: ${(e as Error).message}`);
  }
  // The one address check the upstream guard uses too; a lookup answer that is not an IP is refused.
  const internal = addresses.find((a) => isLocalAddress(a) || net.isIP(a) === 0);
  if (internal || addresses.length === 0) return refuse(socket, 403, `${target.host} resolves to ${internal ?? 'nothing'}, an internal address: not tunnelled`);
  const upstream = net.connect({ host: addresses[0], port: target.port, timeout: 10_000 });
  upstream.once('timeout', () => {
    if (upstream.connecting) refuse(socket, 504, `${target.host}:${target.port} did not answer`);
    upstream.destroy();
    socket.destroy();
  });
  upstream.once('error', (e) => {
    if (!socket.destroyed) refuse(socket, 502, `cannot reach ${target.host}:${target.port} (${(e as NodeJS.ErrnoException).code ?? e.message})`);
  });
  upstream.once('connect', () => {
    upstream.setTimeout(cfg.tunnelIdleSeconds * 1000);
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) upstream.write(head);
    socket.pipe(upstream).pipe(socket);
    socket.once('close', () => upstream.destroy());
    upstream.once('close', () => socket.destroy());
    log.info({ target: `${target.host}:${target.port}` }, 'mirror: tunnel opened');
  });
}
