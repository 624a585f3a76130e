// The node:http adapter: routes a request to its handler, logs one line per request, and
// owns start-up and graceful shutdown. Plain node:http streams blobs with the least overhead.
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { App } from '../app.js';
import { RegistryError } from '../errors.js';
import { bytesSource, countBodyBytes } from '../metrics.js';
import { deleteBlob, getBlob } from './blobs.js';
import type { Ctx, Handler } from './context.js';
import { catalog, ping, tagsList } from './listing.js';
import { authorize, TOKEN_PATH, tokenEndpoint } from './auth.js';
import { deleteManifest, deletingOff, getManifest, putManifest } from './manifests.js';
import { referrers } from './referrers.js';
import { postPull } from './pull.js';
import { deleteUpload, getUpload, patchUpload, postUpload, putUpload } from './uploads.js';
import { BodyWatch, capConnections, isRefused, serverOptions } from './connections.js';
import { rawErrorResponse, SECURITY_HEADERS, sendError } from './respond.js';
import { parseV2Path, type V2Route } from './routes.js';
import { serviceRoutes } from './service.js';
import { uiRoutes } from '../ui/routes.js';
import { startMirror, type Mirror } from '../mirror/front.js';
import { mirrorRoutes } from '../mirror/routes.js';
import { FILL_PEER_PATH, serveFillPeer } from '../registry/pull-through/fill-peer.js';

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type HandlerTable = { [K in V2Route['kind']]: Partial<Record<Method, Handler<Extract<V2Route, { kind: K }>>>> };

/** Handlers of the registry API by route kind and method. Other features add entries here. */
export function v2Handlers(): HandlerTable {
  return {
    ping: { GET: ping, HEAD: ping },
    catalog: { GET: catalog },
    manifest: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
    blob: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
    uploads: { POST: postUpload, PATCH: patchUpload, PUT: putUpload, GET: getUpload, DELETE: deleteUpload },
    tags: { GET: tagsList },
    referrers: { GET: referrers },
  };
}

/** Non-registry routes (web page, health, metrics): exact path → handler. */
export type PlainHandler = (app: App, req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

/** The plain routes served by default. Other features add entries here. */
export function plainHandlers(): Map<string, PlainHandler> {
  return new Map<string, PlainHandler>([[TOKEN_PATH, tokenEndpoint], ...serviceRoutes(), ...uiRoutes(), ...mirrorRoutes(), ['/api/pull', postPull],
    [FILL_PEER_PATH, (app, req, res, url) => serveFillPeer(req, res, url.pathname, { driver: app.driver, blobs: app.blobs, fills: app.cache?.fills })]]);
}

export interface RegistryServer {
  server: Server;
  url: string;
  /** The transparent mirror's TLS front, when `mirror` is configured. */
  mirror?: Mirror;
  close(): Promise<void>;
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function createHandler(app: App, table: HandlerTable = v2Handlers(), extraPlain: Map<string, PlainHandler> = new Map(), bodies?: BodyWatch) {
  const plain = new Map<string, PlainHandler>([...plainHandlers(), ...extraPlain]);
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (isRefused(req.socket)) {
      req.socket.destroy();
      return;
    }
    const started = process.hrtime.bigint();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    let routeKind = 'none';
    let who: string | undefined;
    const sent = countBodyBytes(res);
    res.once('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const bytes = sent();
      const status = res.headersSent ? res.statusCode : 0;
      const m = app.metrics;
      m.requests.inc({ route: routeKind, method: req.method ?? '', status: String(status) });
      m.duration.observe({ route: routeKind }, ms / 1000);
      if (bytes > 0) m.bytesServed.inc({ route: routeKind, source: bytesSource(res) }, bytes);
      app.log.info({
        method: req.method, path: (req.url ?? '').split('?')[0]!.slice(0, 300), route: routeKind, status,
        bytes, ms: Math.round(ms * 10) / 10,
        aborted: !res.writableFinished || undefined, ua: req.headers['user-agent']?.slice(0, 120), who,
      }, 'request');
    });
    try {
      const url = new URL(req.url ?? '/', 'http://registry.invalid');
      const rawPath = (req.url ?? '/').split('?')[0]!;
      const route = parseV2Path(rawPath);
      bodies?.watch(req, res, route?.kind === 'uploads');
      if (!route) {
        const key = url.pathname.startsWith(FILL_PEER_PATH) ? FILL_PEER_PATH : url.pathname; // the one route under a prefix
        const h = plain.get(key);
        if (h) {
          routeKind = key;
          return await h(app, req, res, url);
        }
        // Under /v2/ an OCI client must get an OCI error code (distribution-spec: NAME_UNKNOWN).
        throw new RegistryError(rawPath.startsWith('/v2/') ? 'NAME_UNKNOWN' : 'NOT_FOUND', `no such endpoint: ${req.method} ${rawPath.slice(0, 100)}`);
      }
      routeKind = route.kind;
      res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0');
      const methods = table[route.kind] as Partial<Record<string, Handler>>;
      const handler = methods[req.method ?? ''];
      if (!handler) {
        const allow = Object.keys(methods).join(', ');
        throw new RegistryError('UNSUPPORTED', `${req.method} is not supported on this endpoint (allowed: ${allow || 'GET, HEAD'})`, { headers: { Allow: allow || 'GET, HEAD' } });
      }
      // No sign-in only to learn that nothing can be deleted here.
      if (req.method === 'DELETE' && !app.config.allowDelete && (route.kind === 'blob' || route.kind === 'manifest')) {
        throw deletingOff(route.kind === 'blob' ? 'GET, HEAD' : 'GET, HEAD, PUT');
      }
      const principal = await authorize(app, req, route, url);
      if (principal.kind === 'key' || principal.kind === 'user') who = principal.label;
      // Policy: writing to a repository (or any upload request) is a push, reading it a pull.
      if ('namespace' in route) {
        const push = route.kind === 'uploads' || WRITE_METHODS.has(req.method ?? '');
        app.policy.check(push ? 'push' : 'pull', route.namespace, route.model);
      }
      const ctx: Ctx = { app, req, res, url, route, principal };
      await handler(ctx);
    } catch (e) {
      sendError(req, res, e, app.log);
    }
  };
}

export interface ListenOptions {
  host: string;
  port: number;
  tls?: { cert: string; key: string };
  table?: HandlerTable;
  plain?: Map<string, PlainHandler>;
}

export async function startServer(app: App, opts: ListenOptions): Promise<RegistryServer> {
  const limits = app.config.limits;
  const bodies = new BodyWatch(limits, () => app.log);
  const handler = createHandler(app, opts.table, opts.plain, bodies);
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void handler(req, res);
  const server: Server = opts.tls
    ? https.createServer({ ...serverOptions(limits), cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, onRequest)
    : http.createServer(serverOptions(limits), onRequest);
  capConnections(server, limits, opts.tls !== undefined, () => app.log);
  server.once('close', () => bodies.stop());
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Requests Node's parser refuses (unknown methods, bad framing, huge headers) and headers
    // that did not arrive in time still get a JSON error body, like every other refusal.
    const e = err.code === 'HPE_HEADER_OVERFLOW' ? new RegistryError('HEADERS_TOO_LARGE', 'request headers are too large')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new RegistryError('REQUEST_TIMEOUT', `the request headers did not arrive within ${limits.headersTimeoutSeconds} s; the connection is closed`)
        : new RegistryError('BAD_REQUEST', 'malformed HTTP request');
    if (socket.writable && !isRefused(socket as Socket)) socket.end(rawErrorResponse(e));
    else socket.destroy();
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
    mirror = app.config.mirror ? await startMirror(server, onRequest, app.config.mirror, app.config.offline, app.log, serverOptions(limits)) : undefined;
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
