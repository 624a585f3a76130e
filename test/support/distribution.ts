// Debian's docker-registry (CNCF distribution 2.8) on a loopback port with a temporary config,
// as a real upstream (or, with `proxy`, as the peer pull-through cache the benchmark compares to).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { tempDir } from './server.js';

export const DISTRIBUTION_BIN = process.env.DOCKER_REGISTRY_BIN ?? '/usr/bin/docker-registry';

export function hasDistribution(): boolean {
  return spawnSync(DISTRIBUTION_BIN, ['--version']).status === 0;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Distribution {
  url: string;
  child: ChildProcess;
  close(): Promise<void>;
}

/** `htpasswd`: lines `user:<bcrypt hash>`; the registry then wants Basic on every request. */
export async function startDistribution(opts: { proxy?: string; data?: string; htpasswd?: string } = {}): Promise<Distribution> {
  const dir = opts.data ?? (await tempDir('oreg-dist-'));
  const port = await freePort();
  const cfg = path.join(dir, 'config.yml');
  if (opts.htpasswd) await writeFile(path.join(dir, 'htpasswd'), opts.htpasswd);
  await writeFile(cfg, [
    'version: 0.1',
    'log:', '  level: error', '  accesslog:', '    disabled: true',
    'storage:', `  filesystem:`, `    rootdirectory: ${path.join(dir, 'store')}`, '  delete:', '    enabled: true',
    'http:', `  addr: 127.0.0.1:${port}`,
    ...(opts.proxy ? ['proxy:', `  remoteurl: ${opts.proxy}`] : []),
    ...(opts.htpasswd ? ['auth:', '  htpasswd:', '    realm: test', `    path: ${path.join(dir, 'htpasswd')}`] : []),
  ].join('\n') + '\n');
  const child = spawn(DISTRIBUTION_BIN, ['serve', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => http.get(`${url}/v2/`, (res) => {
      res.resume();
      r(res.statusCode === 200 || (!!opts.htpasswd && res.statusCode === 401));
    }).on('error', () => r(false)));
    if (ok) break;
    if (child.exitCode !== null || Date.now() > end) throw new Error(`docker-registry did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, child,
    close: () => new Promise<void>((r) => {
      if (child.exitCode !== null) return r();
      child.once('exit', () => r());
      child.kill('SIGTERM');
    }),
  };
}

function send(
  method: string, url: string, headers: Record<string, string | number>, body?: Buffer | string | (() => NodeJS.ReadableStream),
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    if (typeof body === 'function') body().pipe(req);
    else req.end(body);
  });
}

/** Push a model folder's manifest and blobs with plain monolithic uploads (POST, then PUT ?digest=). */
export async function pushToDistribution(base: string, repo: string, tag: string, modelsDir: string, manifest: Buffer): Promise<void> {
  const m = JSON.parse(manifest.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
    const file = path.join(modelsDir, 'blobs', `sha256-${d.slice(7)}`);
    const size = (await stat(file)).size;
    const start = await send('POST', `${base}/v2/${repo}/blobs/uploads/`, { 'Content-Length': 0 });
    if (start.status !== 202) throw new Error(`upload start: ${start.status} ${start.body}`);
    const loc = new URL(start.headers.location!, base);
    loc.searchParams.set('digest', d);
    const put = await send('PUT', loc.href, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' }, () => createReadStream(file));
    if (put.status !== 201) throw new Error(`upload ${d}: ${put.status} ${put.body}`);
  }
  const r = await send('PUT', `${base}/v2/${repo}/manifests/${tag}`, { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json', 'Content-Length': manifest.length }, manifest);
  if (r.status !== 201) throw new Error(`manifest put: ${r.status} ${r.body}`);
}
