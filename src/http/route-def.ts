// The shape of a route in the one route table (table.ts): how it is matched, its handlers by
// method, and the access it needs.
import type { IncomingMessage } from 'node:http';
import type { App } from '../app.js';
import type { Action } from '../auth/store.js';
import type { Need } from './auth.js';
import type { Handler } from './context.js';
import type { V2Route } from './routes.js';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

// `any`: the table holds routes of every parameter type; each route's parts agree on its own.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface RouteDef<P = any> {
  /** The route's name in logs and metrics: the /v2 route kind, or the path. */
  name: string;
  /**
   * A /v2 route kind (its parameters: the parsed route), or an exact path (its parameters from
   * `params`); `prefix`: every path under it (one route for a family of paths, e.g. /_internal/fills/).
   */
  match: { v2: V2Route['kind'] } | { path: string; prefix?: true; params?: (url: URL) => P };
  handlers: Partial<Record<Method, Handler<P>>>;
  /** What a request needs (checked before the handler runs); none when absent or null. */
  need?: (params: P, method: string) => Need | null;
  /**
   * For a need named in the body (POST /api/pull): from the headers alone the credentials and
   * this action somewhere, then `read` the body into the parameters, then the need.
   */
  body?: { action: Action; read: (req: IncomingMessage, params: P) => Promise<P> };
  /** Refusals that need no credentials, checked first (e.g. deleting is turned off). */
  refuse?: (app: App, method: string) => void;
  /** The message for a method the route does not answer (default: says which it does). */
  otherMethod?: string;
}

/** Reads of the route's path; nothing else. */
export function readOnly<P>(handler: Handler<P>): Partial<Record<Method, Handler<P>>> {
  return { GET: handler, HEAD: handler };
}
