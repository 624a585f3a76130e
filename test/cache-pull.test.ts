// Prefetch without ollama: the `pull` command (names as users type them, exit codes, plain
// progress lines off a terminal) and POST /api/pull streaming NDJSON progress.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startCacheStack, type CacheStack } from './support/cache.js';
import { request } from './support/http.js';
import { addUser } from './support/registry-auth.js';
import { makeModel, type MadeModel } from './support/models.js';
import { MAIN, tempDir } from './support/server.js';

let s: CacheStack;
let gemma: MadeModel;
let hf: MadeModel;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // The fault front redirects blobs to its CDN host, 127.0.0.2: a private address, so listed.
    const env = { ...process.env, OLLAMA_REGISTRY_CONFIG: '', OLLAMA_REGISTRY_UPSTREAM_ALLOW_PRIVATE_HOSTS: '127.0.0.2' };
    execFile(process.execPath, [MAIN, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function assertHas(data: string, m: MadeModel): Promise<void> {
  for (const b of m.blobs) assert.equal(sha(await readFile(path.join(data, 'blobs', `sha256-${b.digest.slice(7)}`))), b.digest);
}

before(async () => {
  s = await startCacheStack();
  gemma = await makeModel(s.upstream.data, { model: 'gemma2', tag: '2b', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 6 << 20 }] });
  hf = await makeModel(s.upstream.data, { host: 'hf.co', namespace: 'bartowski', model: 'Llama-3.2-1B-GGUF', tag: 'Q4_K_M' });
});
after(() => s.close());

test('pull NAME fills the data folder under the upstream host folder; a second pull fetches nothing', async () => {
  const data = await tempDir();
  s.front.reset();
  const r = await cli(['pull', '--data', data, '--upstream', s.front.url, 'gemma2:2b']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /pulled gemma2:2b: 2 blob\(s\), 0 already here/);
  await assertHas(data, gemma);
  const host = new URL(s.front.url).host;
  assert.deepEqual(await readFile(path.join(data, 'manifests', host, 'library', 'gemma2', '2b')), gemma.manifestBytes);
  assert.equal(s.front.blobBytes(), gemma.blobs.reduce((n, b) => n + b.size, 0));
  s.front.reset();
  const again = await cli(['pull', '--data', data, '--upstream', s.front.url, 'gemma2:2b']);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /2 already here/);
  assert.equal(s.front.blobBytes(), 0);
});

test('pull picks the upstream by the host typed in the name (hf.co/user/repo:quant)', async () => {
  const data = await tempDir();
  const cfg = path.join(data, 'config.yaml');
  await writeFile(cfg, `upstreams:\n  - name: mirror\n    url: ${s.front.url}\n  - name: hf\n    url: ${s.front.url}\n    host: hf.co\nroutes:\n  - { namespace: "*", upstreams: [mirror] }\n`);
  const r = await cli(['pull', '--data', data, '--config', cfg, 'hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  await assertHas(data, hf);
  assert.deepEqual(await readFile(path.join(data, 'manifests', 'hf.co', 'bartowski', 'Llama-3.2-1B-GGUF', 'Q4_K_M')), hf.manifestBytes);
});

test('pull exit codes: 1 when a model fails, 2 for bad names and offline mode', async () => {
  const data = await tempDir();
  const missing = await cli(['pull', '--data', data, '--upstream', s.front.url, 'gemma2:2b', 'nosuchmodel']);
  assert.equal(missing.code, 1);
  assert.match(missing.stdout, /failed nosuchmodel: manifest unknown: library\/nosuchmodel:latest is neither here nor on upstream/);
  assert.match(missing.stdout, /pulled gemma2:2b/);
  const bad = await cli(['pull', '--data', data, '--upstream', s.front.url, 'bad name!']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid model name/);
  const offline = await cli(['pull', '--data', data, '--offline', 'gemma2:2b']);
  assert.equal(offline.code, 2);
  assert.match(offline.stderr, /offline mode is set/);
  const otherHost = await cli(['pull', '--data', data, '--upstream', s.front.url, 'elsewhere.example/ns/m:1']);
  assert.equal(otherHost.code, 1);
  assert.match(otherHost.stdout, /no upstream is configured for host elsewhere\.example/);
});

test('POST /api/pull (for users who may push) streams NDJSON progress and leaves the model cached', async () => {
  const m = await makeModel(s.upstream.data, { model: 'viaapi', tag: 'v1', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 3 << 20 }] });
  // Prefetching writes into the store: credentials that may push in the namespace are needed.
  const anonymous = await request(s.cache.url, '/api/pull', { method: 'POST', body: JSON.stringify({ name: 'viaapi:v1' }) });
  assert.equal(anonymous.status, 401);
  await addUser(s.cache, 'admin', 'secret-pw', 'library');
  const auth = { Authorization: `Basic ${Buffer.from('admin:secret-pw').toString('base64')}` };
  const r = await request(s.cache.url, '/api/pull', { method: 'POST', body: JSON.stringify({ name: 'viaapi:v1' }), headers: auth });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/x-ndjson');
  const lines = r.text().trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines[0], { status: 'pulling manifest' });
  assert.deepEqual(lines.at(-1), { status: 'success' });
  const big = m.blobs[0]!;
  assert.ok(lines.some((l) => l.digest === big.digest && l.total === big.size && l.completed === big.size));
  await assertHas(s.cache.data, m);
  const err = await request(s.cache.url, '/api/pull', { method: 'POST', body: JSON.stringify({ name: 'nothere:v1' }), headers: auth });
  assert.match(JSON.parse(err.text().trim().split('\n').at(-1)!).error, /nothere:v1 is neither here nor on upstream/);
  const bad = await request(s.cache.url, '/api/pull', { method: 'POST', body: 'nope', headers: auth });
  assert.equal(bad.status, 400);
  assert.equal((await request(s.cache.url, '/api/pull')).status, 405);
});
