// Endpoints for operators: /healthz (the process answers), /readyz (it can do its job),
// /metrics (Prometheus text format).
import { randomBytes } from 'node:crypto';
import type { App } from '../app.js';
import { stateKey } from '../storage/layout.js';
import type { Handler } from './context.js';
import { sendJson } from './respond.js';
import { readOnly, type RouteDef } from './route-def.js';

const healthz: Handler = async ({ res }) => {
  sendJson(res, 200, { status: 'ok' }, { 'Cache-Control': 'no-store' });
};

/** Write, read back and delete a small file where the registry keeps its state. */
export async function storageCheck(app: App): Promise<string> {
  const key = stateKey(`readyz-${process.pid}-${randomBytes(4).toString('hex')}`);
  const probe = randomBytes(16);
  try {
    await app.driver.write(key, probe);
    if (!(await app.driver.readAll(key)).equals(probe)) return 'the probe file read back differently';
    return 'ok';
  } catch (e) {
    return `not writable: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    await app.driver.delete(key).catch(() => {});
  }
}

const readyz: Handler = async ({ app, res }) => {
  const [storage, disk] = await Promise.all([storageCheck(app), app.space.status()]);
  // A broken edit of the config file leaves the previous policy in force: still ready, but say so.
  const reloadError = app.policy.reloadError;
  const checks = { storage, disk, config: reloadError ? `loaded; the last edit was not applied: ${reloadError}` : 'ok' };
  const ready = storage === 'ok' && disk === 'ok';
  sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks }, { 'Cache-Control': 'no-store' });
};

const metrics: Handler = async ({ app, req, res }) => {
  const body = Buffer.from(await app.metrics.registry.metrics());
  res.writeHead(200, { 'Content-Type': app.metrics.registry.contentType, 'Content-Length': body.length, 'Cache-Control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
};

export function serviceRoutes(): RouteDef[] {
  return Object.entries({ '/healthz': healthz, '/readyz': readyz, '/metrics': metrics }).map(([path, h]) => ({ name: path, match: { path }, handlers: readOnly(h) }));
}
