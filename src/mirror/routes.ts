// The mirror's public endpoints: its CA certificate (public by nature) and the client set-up text.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import { origin } from '../http/context.js';
import type { Handler } from '../http/context.js';
import { readOnly, type RouteDef } from '../http/route-def.js';
import { setupPage } from './setup-page.js';
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

// The page links only its own stylesheet and icon, and runs no script.
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
};

/** ?os=X: the plain text `client-setup --os X` prints; without it, the web page with every OS. */
const setup: Handler = async ({ app, req, res, url }) => {
  const m = app.config.mirror;
  if (!m) throw new RegistryError('NOT_FOUND', 'this registry is not a transparent mirror (serve --mirror)');
  const mode = url.searchParams.get('mode') === 'dns' ? 'dns' : 'proxy';
  const wanted = url.searchParams.get('os');
  let body: string;
  let type: string;
  if (wanted === null) {
    const caPem = await readFile(path.join(m.dir, 'ca.pem'), 'utf8').catch(() => null);
    body = setupPage({ registry: origin(req), mode, hosts: m.hosts, caPem });
    type = 'text/html; charset=utf-8';
    for (const [k, v] of Object.entries(PAGE_HEADERS)) res.setHeader(k, v);
  } else {
    const os = wanted as ClientOs;
    if (!CLIENT_OSES.includes(os)) throw new RegistryError('BAD_REQUEST', `os must be one of ${CLIENT_OSES.join(', ')}`);
    body = setupText({ os, mode, registry: origin(req), uninstall: url.searchParams.get('uninstall') === '1' });
    type = 'text/plain; charset=utf-8';
  }
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
};

export function mirrorRoutes(): RouteDef[] {
  return Object.entries({ '/mirror/ca.pem': caPem, '/mirror/setup': setup }).map(([path, h]) => ({ name: path, match: { path }, handlers: readOnly(h) }));
}
