// Two processes on one data folder: `serve` follows the fill that `ollama-registry pull` runs
// (serving the bytes already on disk as they grow, then the published blob), takes the fill over
// when the pull dies (its lease expires), and `pull` waits for a fill that `serve` runs. Each byte
// crosses the link once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { frontedUpstream } from './support/fault-upstream.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { MAIN, spawnRegistry, tempDir } from './support/server.js';
import { waitFor } from './support/eventually.js';

const MiB = 1 << 20;
const MODEL = 'application/vnd.ollama.image.model';
const link = frontedUpstream();

// Leases expire after 2 s here, so a killed owner is replaced quickly.
const LEASE = { OLLAMA_REGISTRY_LEASE: '2' };
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function pull(data: string, name: string) {
  const child = spawn(process.execPath, [MAIN, 'pull', '--data', data, '--upstream', link.front.url, name], { env: { ...process.env, OLLAMA_REGISTRY_CONFIG: '', ...LEASE } });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
  const done = new Promise<{ code: number | null; out: string }>((r) => child.once('exit', (code) => r({ code, out })));
  return { child, done };
}

/** Bytes the fill of `digest` in `data` has recorded as on disk (0 without a state file). */
async function recorded(data: string, digest: string): Promise<number> {
  try {
    const st = JSON.parse(await readFile(path.join(data, '.ollama-registry', 'scratch', 'fills', `sha256-${digest.slice(7)}`, 'state.json'), 'utf8')) as { have: Array<[number, number]> };
    return st.have.reduce((n, [a, z]) => n + z - a, 0);
  } catch {
    return 0;
  }
}

test('serve answers a blob that `pull` is filling, from the bytes on disk as they grow; the link carries it once', async () => {
  const m = await makeModel(link.upstream.data, { model: 'shared', tag: 'v1', layers: [{ mediaType: MODEL, size: 24 * MiB, seed: 'shared' }] });
  const b = m.blobs.find((x) => x.size === 24 * MiB)!;
  const data = await tempDir();
  link.front.reset();
  link.front.rate = 8 * MiB;
  const serve = await spawnRegistry(['--data', data, '--upstream', link.front.url], LEASE);
  try {
    const p = pull(data, 'shared:v1');
    await waitFor(async () => (await recorded(data, b.digest)) >= 2 * MiB);
    const url = `/v2/library/shared/blobs/${b.digest}`;
    const [whole, part] = await Promise.all([
      request(serve.url, url),
      request(serve.url, url, { headers: { Range: `bytes=${20 * MiB}-${22 * MiB - 1}` } }),
    ]);
    assert.equal(whole.status, 200, whole.text().slice(0, 300));
    assert.equal(whole.headers['x-ollama-registry-cache'], 'filling', 'answered while the other process was filling');
    assert.equal(sha(whole.body), b.digest);
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(whole.body.subarray(20 * MiB, 22 * MiB)));
    const r = await p.done;
    assert.equal(r.code, 0, r.out);
    assert.equal(link.front.blobBytes(), m.blobs.reduce((n, x) => n + x.size, 0), 'every blob crossed the link once');
    assert.match(serve.output(), /following it/);
  } finally {
    await serve.stop();
  }
});

test('the pull dies (kill -9) while serve follows it: its lease expires and serve takes the fill over where it stopped', async () => {
  const m = await makeModel(link.upstream.data, { model: 'shared', tag: 'v2', layers: [{ mediaType: MODEL, size: 24 * MiB, seed: 'takeover' }] });
  const b = m.blobs.find((x) => x.size === 24 * MiB)!;
  const data = await tempDir();
  link.front.reset();
  link.front.rate = 4 * MiB;
  const serve = await spawnRegistry(['--data', data, '--upstream', link.front.url], LEASE);
  try {
    const p = pull(data, 'shared:v2');
    await waitFor(async () => (await recorded(data, b.digest)) >= 3 * MiB);
    const whole = request(serve.url, `/v2/library/shared/blobs/${b.digest}`);
    await waitFor(() => /following it/.test(serve.output()));
    await new Promise((r) => setTimeout(r, 300));
    // Cut the link first, so that what the pull got is exactly what it recorded.
    await link.front.down();
    p.child.kill('SIGKILL');
    await p.done;
    const kept = await recorded(data, b.digest);
    assert.ok(kept > 0 && kept < b.size, `kept ${kept}`);
    link.front.reset();
    link.front.rate = 0;
    await link.front.up();
    const r = await whole;
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), b.digest);
    await waitFor(() => existsSync(path.join(data, 'blobs', `sha256-${b.digest.slice(7)}`)));
    assert.equal(link.front.blobBytes(), b.size - kept, 'only what the pull had not recorded crossed the link again');
    assert.match(serve.output(), /took over a fill/);
  } finally {
    await serve.stop();
  }
});

test('pull while serve fills the same blob: pull waits for it instead of failing, nothing is fetched twice', async () => {
  const m = await makeModel(link.upstream.data, { model: 'shared', tag: 'v3', layers: [{ mediaType: MODEL, size: 16 * MiB, seed: 'reverse' }] });
  const b = m.blobs.find((x) => x.size === 16 * MiB)!;
  const data = await tempDir();
  link.front.reset();
  link.front.rate = 8 * MiB;
  const serve = await spawnRegistry(['--data', data, '--upstream', link.front.url], LEASE);
  try {
    // The manifest first, as ollama asks: blobs are read through a repository that references them.
    assert.equal((await request(serve.url, '/v2/library/shared/manifests/v3')).status, 200);
    const whole = request(serve.url, `/v2/library/shared/blobs/${b.digest}`);
    await waitFor(async () => (await recorded(data, b.digest)) >= 1 * MiB);
    const r = await pull(data, 'shared:v3').done;
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /pulled shared:v3/);
    assert.equal(sha((await whole).body), b.digest);
    assert.equal(link.front.blobBytes(), m.blobs.reduce((n, x) => n + x.size, 0));
  } finally {
    await serve.stop();
  }
});
