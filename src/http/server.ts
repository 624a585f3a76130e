// The node:http adapter: listens, feeds requests into the pipeline (pipeline.ts), and owns
// start-up and graceful shutdown. Plain node:http streams blobs with the least overhead.
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { App } from '../app.js';
import { BodyWatch, capConnections, isRefused, serverOptions } from './connections.js';
import { createHandler } from './pipeline.js';
import { sendClientError } from './respond.js';
import type { RouteDef } from './route-def.js';
import { siteTable } from './sites.js';
import { startMirror, type Mirror } from '../mirror/front.js';

export interface RegistryServer {
  server: Server;
  url: string;
  /** The transparent mirror's TLS front, when `mirror` is configured. */
  mirror?: Mirror;
  close(): Promise<void>;
}

export interface ListenOptions {
  host: string;
  port: number;
  tls?: { cert: string; key: string };
  /** The routes to serve instead of the default table (tests swap handlers in it). */
  routes?: RouteDef[];
}

export async function startServer(app: App, opts: ListenOptions): Promise<RegistryServer> {
  const limits = app.config.limits;
  const bodies = new BodyWatch(limits, () => app.log);
  const sites = siteTable(app);
  const handler = createHandler(app, opts.routes, bodies, sites);
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void handler(req, res);
  const server: Server = opts.tls
    ? https.createServer({ ...serverOptions(limits), cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, onRequest)
    : http.createServer(serverOptions(limits), onRequest);
  capConnections(server, limits, opts.tls !== undefined, () => app.log);
  server.once('close', () => bodies.stop());
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    sendClientError(err, socket as Socket, limits.headersTimeoutSeconds, !isRefused(socket as Socket));
    app.log.debug({ err: err.message }, 'bad request from client');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Load which blobs each repository references now, not on the first blob request.
  app.access.start().catch((e: unknown) => app.log.warn({ err: (e as Error).message }, 'could not read the manifests for blob access'));
  let mirror: Mirror | undefined;
  try {
    const mirrorOptions = { serverOptions: serverOptions(limits), upstreamFor: (h: string) => app.cache?.upstreamForHost(h) };
    mirror = app.config.mirror ? await startMirror(server, onRequest, app.config.mirror, sites, app.config.offline, app.log, mirrorOptions) : undefined;
  } catch (e) {
    server.close();
    throw e;
  }
  const stopSweeper = app.uploads.startSweeper(app.config.uploadMaxAgeHours * 3600_000);
  server.once('close', stopSweeper);
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`;
  app.cache?.fills.advertise(app.config.storage.advertiseUrl ?? url);
  app.uploads.advertise(app.config.storage.advertiseUrl ?? url);
  return {
    server,
    url,
    mirror,
    close: async () => {
      await mirror?.close();
      await closeServer(server, app.config.shutdownTimeoutSeconds * 1000);
    },
  };
}

/** Stop accepting; let in-flight requests finish for up to `graceMs`, then cut them. */
export function closeServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    // Keep-alive sockets become idle as their last response ends: close them as they do.
    const sweep = setInterval(() => server.closeIdleConnections(), 100);
    server.close(() => {
      clearTimeout(timer);
      clearInterval(sweep);
      resolve();
    });
    server.closeIdleConnections();
  });
}
