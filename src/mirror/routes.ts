// The mirror's public endpoints: its CA certificate (public by nature) and the client set-up text.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import { origin } from '../http/context.js';
import type { Handler } from '../http/context.js';
import { readOnly, type RouteDef } from '../http/route-def.js';
import { CLIENT_OSES, setupText, type ClientOs } from './setup.js';

const caPem: Handler = async ({ app, res }) => {
  const m = app.config.mirror;
  if (!m) throw new RegistryError('NOT_FOUND', 'this registry is not a transparent mirror (serve --mirror)');
  let pem: Buffer;
  try {
    pem = await readFile(path.join(m.dir, 'ca.pem'));
  } catch {
    throw new RegistryError('NOT_FOUND', `no ca.pem in the mirror folder; run: ollama-registry ca init --dir ${m.dir}`);
  }
  res.writeHead(200, { 'Content-Type': 'application/x-pem-file', 'Content-Length': pem.length, 'Cache-Control': 'no-cache' });
  res.end(pem);
};

const setup: Handler = async ({ app, req, res, url }) => {
  if (!app.config.mirror) throw new RegistryError('NOT_FOUND', 'this registry is not a transparent mirror (serve --mirror)');
  const os = (url.searchParams.get('os') ?? 'linux') as ClientOs;
  if (!CLIENT_OSES.includes(os)) throw new RegistryError('BAD_REQUEST', `os must be one of ${CLIENT_OSES.join(', ')}`);
  const mode = url.searchParams.get('mode') === 'dns' ? 'dns' : 'proxy';
  const text = setupText({ os, mode, registry: origin(req), uninstall: url.searchParams.get('uninstall') === '1' });
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
};

export function mirrorRoutes(): RouteDef[] {
  return Object.entries({ '/mirror/ca.pem': caPem, '/mirror/setup': setup }).map(([path, h]) => ({ name: path, match: { path }, handlers: readOnly(h) }));
}
