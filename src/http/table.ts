// The one route table: every endpoint the registry answers (the registry API, its token
// endpoint, the service endpoints, the web page, the mirror's pages, /api/pull), each with its
// handlers by method and the access it needs. The pipeline (pipeline.ts) finds the route, runs
// the gate for its need, and only then the handler.
import type { App } from '../app.js';
import { mirrorRoutes } from '../mirror/routes.js';
import { FILL_PEER_PATH, serveFillPeer } from '../registry/pull-through/fill-peer.js';
import { uiRoutes } from '../ui/routes.js';
import { needOf, TOKEN_PATH, tokenEndpoint } from './auth.js';
import { deleteBlob, getBlob } from './blobs.js';
import { catalog, ping, tagsList } from './listing.js';
import { deleteManifest, deletingOff, getManifest, putManifest } from './manifests.js';
import { pullRoute } from './pull.js';
import { referrers } from './referrers.js';
import { readOnly, type RouteDef } from './route-def.js';
import { serviceRoutes } from './service.js';
import { UPLOAD_PEER_PATH } from './upload-forward.js';
import { deleteUpload, getUpload, patchUpload, peerUpload, postUpload, putUpload } from './uploads.js';

/** No sign-in only to learn that nothing can be deleted here. */
function noDelete(allow: string) {
  return (app: App, method: string) => {
    if (method === 'DELETE' && !app.config.allowDelete) throw deletingOff(allow);
  };
}

/** Another registry process reading a fill this one owns: no registry sign-in, its own HMAC check (fill-peer.ts). */
const fillPeerRoute: RouteDef = {
  name: FILL_PEER_PATH, match: { path: FILL_PEER_PATH, prefix: true },
  handlers: { GET: ({ app, req, res, url }) => serveFillPeer(req, res, url.pathname, { driver: app.driver, blobs: app.blobs, fills: app.cache?.fills }) },
};

/** Another registry process forwarding a request on an upload session this one holds: its own HMAC check (upload-forward.ts). */
const uploadPeerRoute: RouteDef = {
  name: UPLOAD_PEER_PATH, match: { path: UPLOAD_PEER_PATH, prefix: true },
  handlers: { PATCH: peerUpload, PUT: peerUpload, GET: peerUpload, DELETE: peerUpload },
};

/** The routes served by default, in a fresh table (tests may replace handlers in it). */
export function routeTable(): RouteDef[] {
  const v2: RouteDef[] = [
    { name: 'ping', match: { v2: 'ping' }, handlers: readOnly(ping), need: needOf },
    { name: 'catalog', match: { v2: 'catalog' }, handlers: { GET: catalog }, need: needOf },
    {
      name: 'manifest', match: { v2: 'manifest' }, need: needOf, refuse: noDelete('GET, HEAD, PUT'),
      handlers: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
    },
    { name: 'blob', match: { v2: 'blob' }, handlers: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob }, need: needOf, refuse: noDelete('GET, HEAD') },
    {
      name: 'uploads', match: { v2: 'uploads' }, need: needOf,
      handlers: { POST: postUpload, PATCH: patchUpload, PUT: putUpload, GET: getUpload, DELETE: deleteUpload },
    },
    { name: 'tags', match: { v2: 'tags' }, handlers: { GET: tagsList }, need: needOf },
    { name: 'referrers', match: { v2: 'referrers' }, handlers: { GET: referrers }, need: needOf },
  ];
  const token: RouteDef = { name: TOKEN_PATH, match: { path: TOKEN_PATH }, handlers: { GET: tokenEndpoint }, otherMethod: 'the token endpoint answers GET' };
  // Copies: a test that swaps a handler changes its own table only.
  return [...v2, token, ...serviceRoutes(), ...uiRoutes(), ...mirrorRoutes(), pullRoute, fillPeerRoute, uploadPeerRoute].map((r) => ({ ...r, handlers: { ...r.handlers } }));
}

/** The table indexed for the pipeline: /v2 routes by kind, the others by path. */
export interface RouteIndex {
  v2: Map<string, RouteDef>;
  paths: Map<string, RouteDef>;
  prefixes: RouteDef[];
}

export function indexRoutes(table: RouteDef[]): RouteIndex {
  const index: RouteIndex = { v2: new Map(), paths: new Map(), prefixes: [] };
  for (const r of table) {
    if ('v2' in r.match) index.v2.set(r.match.v2, r);
    else if (r.match.prefix) index.prefixes.push(r);
    else index.paths.set(r.match.path, r);
  }
  return index;
}
