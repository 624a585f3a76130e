// The web catalog's routes: the page and its assets (all served from here: no CDN, works offline)
// and the small JSON API only the page uses (documented in README, "The web catalog").
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { RegistryError } from '../errors.js';
import { readerOf } from '../http/auth.js';
import type { Handler } from '../http/context.js';
import { sendJson } from '../http/respond.js';
import { readOnly, type RouteDef } from '../http/route-def.js';
import { checkPart } from '../names.js';
import { buildCatalog } from './catalog.js';
import { modelDetails } from './details.js';
import { features } from './hooks.js';

// Compiled from src/ui/client/app.ts next to this module; the rest is shipped as written.
const CLIENT_DIR = new URL('./client/', import.meta.url);
const STATIC_DIR = new URL('../../../src/ui/static/', import.meta.url);

const ASSETS: Record<string, { file: URL; type: string }> = {
  '/': { file: new URL('index.html', STATIC_DIR), type: 'text/html; charset=utf-8' },
  '/ui/app.css': { file: new URL('app.css', STATIC_DIR), type: 'text/css; charset=utf-8' },
  '/ui/app.js': { file: new URL('app.js', CLIENT_DIR), type: 'text/javascript; charset=utf-8' },
  '/ui/model.js': { file: new URL('model.js', CLIENT_DIR), type: 'text/javascript; charset=utf-8' },
  '/ui/actions.js': { file: new URL('actions.js', CLIENT_DIR), type: 'text/javascript; charset=utf-8' },
  '/ui/util.js': { file: new URL('util.js', CLIENT_DIR), type: 'text/javascript; charset=utf-8' },
  '/ui/bytes.js': { file: new URL('bytes.js', CLIENT_DIR), type: 'text/javascript; charset=utf-8' },
  '/ui/favicon.svg': { file: new URL('favicon.svg', STATIC_DIR), type: 'image/svg+xml' },
};

// Model data is shown as text only; this policy also stops any injected markup from running.
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

const loaded = new Map<string, Promise<{ body: Buffer; etag: string }>>();

function load(path: string): Promise<{ body: Buffer; etag: string }> {
  let p = loaded.get(path);
  if (!p) {
    p = readFile(ASSETS[path]!.file).then((body) => ({ body, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 20)}"` }));
    p.catch(() => loaded.delete(path));
    loaded.set(path, p);
  }
  return p;
}

function asset(path: string): Handler {
  return async ({ req, res }) => {
    let file: { body: Buffer; etag: string };
    try {
      file = await load(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      throw new RegistryError('UNAVAILABLE', `the web page is not built (${path} is missing): run npm run build`);
    }
    const headers = { ...SECURITY_HEADERS, ETag: file.etag, 'Cache-Control': 'no-cache' };
    if (req.headers['if-none-match'] === file.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': ASSETS[path]!.type, 'Content-Length': file.body.length });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  };
}

function param(url: URL, name: string): string {
  const v = url.searchParams.get(name);
  if (v === null || v === '') throw new RegistryError('NAME_INVALID', `the ${name} query parameter is required`);
  return v;
}

const NO_STORE = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };

const models: Handler = async ({ app, req, res }) => {
  const reader = await readerOf(app, req);
  const catalog = await buildCatalog(app);
  // Only what the requester may pull (their rights, then the policy rules), as _catalog
  // lists; the disk figures stay the whole store's.
  const models = catalog.models.filter((m) => reader.mayPull(m.namespace, m.model) && app.policy.decide('pull', m.namespace, m.model).allowed);
  const signInToRead = !reader.principal && !app.config.auth.anonymousRead;
  sendJson(res, 200, { features: features(app), ...catalog, models, signInToRead, generated: new Date().toISOString() }, NO_STORE);
};

interface ModelParams {
  host: string;
  namespace: string;
  model: string;
  tag: string | null;
}

const model: Handler<ModelParams> = async ({ app, res, route }) => {
  const details = await modelDetails(app, route.host, route.namespace, route.model, route.tag);
  sendJson(res, 200, { features: features(app), ...details }, NO_STORE);
};

/** The page's routes: its assets, then its API. */
export function uiRoutes(): RouteDef[] {
  const routes: RouteDef[] = Object.keys(ASSETS).map((path) => ({ name: path, match: { path }, handlers: readOnly(asset(path)) }));
  // The listing decides per model who may see it; no need of its own.
  routes.push({ name: '/api/ui/models', match: { path: '/api/ui/models' }, handlers: readOnly(models) });
  routes.push({
    name: '/api/ui/model',
    match: {
      path: '/api/ui/model',
      params: (url): ModelParams => ({
        host: checkPart('host', param(url, 'host')),
        namespace: checkPart('namespace', param(url, 'namespace')),
        model: checkPart('model', param(url, 'model')),
        tag: url.searchParams.get('tag') || null,
      }),
    },
    handlers: readOnly(model),
    // A pull of this model: 401 without the credentials reads need, 403 for missing rights or a policy rule.
    need: (p: ModelParams) => ({ action: 'pull', repository: { namespace: p.namespace, model: p.model } }),
  });
  return routes;
}
