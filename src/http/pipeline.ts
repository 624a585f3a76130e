// The one request pipeline: security headers, the route from the one table, refusals that need
// no credentials, the gate for the route's need, then its handler; every error becomes a response
// in one place (respond.ts); one log line and the metrics per request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App } from '../app.js';
import { RegistryError } from '../errors.js';
import { bytesSource, countBodyBytes } from '../metrics.js';
import { authorize, authorizeBeforeBody } from './auth.js';
import type { BodyWatch } from './connections.js';
import { isRefused } from './connections.js';
import type { Ctx } from './context.js';
import { SECURITY_HEADERS, sendError } from './respond.js';
import type { Method, RouteDef } from './route-def.js';
import { parseV2Path, type V2Route } from './routes.js';
import { siteTable, type SiteTable } from './sites.js';
import { indexRoutes, routeTable, type RouteIndex } from './table.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

interface Found {
  def: RouteDef;
  v2: V2Route | null;
}

/** The route of a request, or a NOT_FOUND (under /v2/: NAME_UNKNOWN, the OCI code). */
function find(index: RouteIndex, method: string, rawPath: string, url: URL): Found {
  const v2: V2Route | null = parseV2Path(rawPath);
  const def = v2 ? index.v2.get(v2.kind) : (index.paths.get(url.pathname) ?? index.prefixes.find((r) => 'path' in r.match && url.pathname.startsWith(r.match.path)));
  if (!def) {
    throw new RegistryError(rawPath.startsWith('/v2/') ? 'NAME_UNKNOWN' : 'NOT_FOUND', `no such endpoint: ${method} ${rawPath.slice(0, 100)}`);
  }
  return { def, v2 };
}

function otherMethod(def: RouteDef, method: string): RegistryError {
  const allow = Object.keys(def.handlers).join(', ') || 'GET, HEAD';
  const message = def.otherMethod ?? ('v2' in def.match ? `${method} is not supported on this endpoint (allowed: ${allow})` : `${method} is not supported on this endpoint`);
  return new RegistryError('UNSUPPORTED', message, { headers: { Allow: allow } });
}

/**
 * The request handler of a server: `table` replaces the default routes (tests swap handlers in
 * it); `sites`: the site table it shares with the mirror's TLS front.
 */
export function createHandler(app: App, table: RouteDef[] = routeTable(), bodies?: BodyWatch, sites: SiteTable = siteTable(app)): RequestHandler {
  const index = indexRoutes(table);
  return async (req, res) => {
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
      const method = req.method ?? '';
      const url = new URL(req.url ?? '/', 'http://registry.invalid');
      const rawPath = (req.url ?? '/').split('?')[0]!;
      const { def, v2 } = find(index, method, rawPath, url);
      routeKind = def.name;
      bodies?.watch(req, res, def.name === 'uploads');
      if ('v2' in def.match) res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0');
      const handler = def.handlers[method as Method];
      if (!handler) throw otherMethod(def, method);
      def.refuse?.(app, method);
      let params: unknown = v2 ?? ('params' in def.match && def.match.params ? def.match.params(url) : {});
      // Credentials from the headers before any body byte is read: an anonymous client never gets to hold a body open.
      if (def.body) {
        await authorizeBeforeBody(app, req, def.body.action);
        params = await def.body.read(req, params);
      }
      const need = def.need?.(params, method);
      const principal = need ? await authorize(app, req, need, url) : undefined;
      if (principal?.kind === 'key' || principal?.kind === 'user') who = principal.label;
      const ctx: Ctx = { app, req, res, url, route: params, site: sites.lookup(req.headers.host), principal };
      await handler(ctx);
    } catch (e) {
      sendError(req, res, e, app.log);
    }
  };
}
