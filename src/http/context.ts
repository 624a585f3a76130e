import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { App } from '../app.js';
import type { Principal } from '../auth/decisions.js';
import type { Site } from './sites.js';

/** What every handler gets. `route`: the parsed /v2 route, or what a plain route's `params` read from the URL. */
export interface Ctx<R = unknown> {
  app: App;
  req: IncomingMessage;
  res: ServerResponse;
  /** Parsed request URL (query in url.searchParams). */
  url: URL;
  route: R;
  /** Which host folder answers and which upstream fills (from the Host header; src/http/sites.ts). */
  site: Site;
  /** Who sent the request (set by the gate before the handler runs; none for routes without a need). */
  principal?: Principal;
}

/** The one handler shape, for every route (registry API, token, service endpoints, web page, mirror pages). */
export type Handler<R = unknown> = (ctx: Ctx<R>) => Promise<void>;

const HOST_RE = /^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** scheme://host[:port] as the client reached us (the Host header, when it is a plain host). */
export function origin(req: IncomingMessage): string {
  const scheme = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  const host = req.headers.host;
  if (host && HOST_RE.test(host)) return `${scheme}://${host}`;
  const addr = req.socket.localAddress ?? '127.0.0.1';
  const h = addr.includes(':') ? `[${addr}]` : addr;
  return `${scheme}://${h}:${req.socket.localPort}`;
}

/** Absolute URL of a path on this registry, as the client reached it. */
export function absoluteUrl(req: IncomingMessage, pathAndQuery: string): string {
  return origin(req) + pathAndQuery;
}
