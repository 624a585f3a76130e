// POST /api/pull {"name": "gemma2:2b", "stream": true}: prefetch a model through the cache and
// stream progress as NDJSON lines shaped like ollama's own /api/pull (for the web page). Only
// for credentials that may push in the model's namespace (Basic or a Bearer token).
import type { IncomingMessage } from 'node:http';
import { RegistryError, isRegistryError } from '../errors.js';
import { parseModelName } from '../names.js';
import { prefetch, type PullEvent } from '../registry/pull-through/prefetch.js';
import type { Handler } from './context.js';
import type { RouteDef } from './route-def.js';

const MAX_BODY = 64 << 10;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new RegistryError('SIZE_INVALID', 'request body too large');
    chunks.push(c as Buffer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* below */
  }
  throw new RegistryError('NAME_INVALID', 'expected a JSON body like {"name": "gemma2:2b"}');
}

interface PullParams {
  name: string;
  stream: boolean;
  namespace: string;
  model: string;
}

async function readPull(req: IncomingMessage): Promise<PullParams> {
  const body = await readJson(req);
  const name = body.name ?? body.model;
  if (typeof name !== 'string' || name === '') throw new RegistryError('NAME_INVALID', 'expected a JSON body like {"name": "gemma2:2b"}');
  const n = parseModelName(name);
  return { name, stream: body.stream !== false, namespace: n.namespace, model: n.model };
}

const postPull: Handler<PullParams> = async ({ app, res, route: { name, stream } }) => {
  if (!stream) {
    const r = await prefetch(app, name, () => {});
    const bytes = Buffer.from(JSON.stringify({ status: 'success', ...r }) + '\n');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
    res.end(bytes);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store' });
  let last = '';
  const emit = (e: PullEvent) => {
    const line = JSON.stringify(e);
    if (line === last || res.destroyed) return; // the client going away does not stop the pull
    last = line;
    res.write(line + '\n');
  };
  try {
    await prefetch(app, name, emit);
  } catch (e) {
    if (!isRegistryError(e)) app.log.error({ err: e, name }, 'pull failed');
    emit({ error: isRegistryError(e) ? e.message : 'internal error; the registry log has the details' });
  }
  res.end();
};

/**
 * Credentials first, from the headers (some push right): an anonymous client never gets to
 * hold a body open. Then the body names the model, and starting a pull writes to the store: it
 * needs the right to push to that repository (the pull-through rules apply as it runs).
 */
export const pullRoute: RouteDef<PullParams> = {
  name: '/api/pull',
  match: { path: '/api/pull' },
  handlers: { POST: postPull },
  otherMethod: 'use POST /api/pull with {"name": "…"}',
  body: { action: 'push', read: readPull },
  need: (p) => ({ action: 'push', repository: { namespace: p.namespace, model: p.model }, rule: null }),
};
