// Pull-through: a cache registry in front of an upstream (our own server behind a counting front),
// through real HTTP on loopback. Every blob must cross the upstream link exactly once.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FILL_TUNING } from '../src/registry/pull-through/fills.js';
import { startCacheStack, type CacheStack } from './support/cache.js';
import { request } from './support/http.js';
import { makeModel, type MadeModel } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { startTestRegistry, tempDir } from './support/server.js';
import { waitFor } from './support/eventually.js';

const MiB = 1 << 20;
const UA = 'ollama/0.12.3 (amd64 linux) Go/go1.24.1';
let s: CacheStack;
let big: MadeModel;
let small: MadeModel;

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (digest: string) => `/v2/library/big/blobs/${digest}`;

/** A fresh blob on the upstream for one test, so each test starts cold; its manifest is
 * fetched through the cache first, as ollama does (blobs are read through a repository that references them). */
async function freshBlob(size: number, seed: string): Promise<{ digest: string; size: number }> {
  const m = await makeModel(s.upstream.data, { model: 'big', tag: seed, layers: [{ mediaType: 'application/vnd.ollama.image.model', size, seed }] });
  assert.equal((await request(s.cache.url, `/v2/library/big/manifests/${seed}`)).status, 200);
  return m.blobs[0]!;
}

before(async () => {
  // Small requests per lane, so that small test blobs behave like big ones with ollama's big parts.
  FILL_TUNING.firstChunk = 512 << 10;
  FILL_TUNING.maxChunk = 2 * MiB;
  FILL_TUNING.minSplit = 256 << 10;
  s = await startCacheStack();
  big = await makeModel(s.upstream.data, { model: 'big', tag: 'latest', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 12 * MiB }] });
  small = await makeModel(s.upstream.data, { model: 'gemma2', tag: '2b' });
  assert.equal((await request(s.cache.url, '/v2/library/big/manifests/latest')).status, 200);
});
after(() => s.close());

test('a manifest miss is fetched, stored verbatim under the upstream host folder, then served from the cache', async () => {
  s.front.reset();
  const r = await request(s.cache.url, '/v2/library/gemma2/manifests/2b', { headers: { 'User-Agent': UA } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, small.manifestBytes);
  assert.equal(r.headers['x-ollama-registry-cache'], 'miss');
  // The upstream (like registry.ollama.ai) said text/plain, with no digest header: the cache answers properly.
  assert.equal(r.headers['content-type'], 'application/vnd.docker.distribution.manifest.v2+json');
  assert.equal(r.headers['docker-content-digest'], small.manifestDigest);
  const stored = path.join(s.cache.data, 'manifests', new URL(s.front.url).host, 'library', 'gemma2', '2b');
  assert.deepEqual(await readFile(stored), small.manifestBytes);
  // The client's User-Agent goes upstream: registries gate model versions by it.
  assert.equal(s.front.requests.find((q) => q.path.includes('/manifests/'))?.ua, UA);
  const again = await request(s.cache.url, '/v2/library/gemma2/manifests/2b');
  assert.equal(again.headers['x-ollama-registry-cache'], 'hit');
  assert.equal(s.front.requests.filter((q) => q.path.includes('/manifests/')).length, 1);
});

test('one client: a cold whole-blob GET streams the right bytes and fetches each byte once', async () => {
  const b = big.blobs[0]!;
  s.front.reset();
  const r = await request(s.cache.url, blobPath(b.digest));
  assert.equal(r.status, 200);
  assert.equal(r.body.length, b.size);
  assert.equal(sha(r.body), b.digest);
  assert.ok(r.headers.location, 'a 200 blob answer carries Location (ollama needs it)');
  assert.equal(s.front.blobBytes(), b.size);
  await waitFor(() => existsSync(path.join(s.cache.data, 'blobs', `sha256-${b.digest.slice(7)}`)));
  assert.deepEqual(await readdir(path.join(s.cache.data, '.ollama-registry', 'scratch', 'fills')), []);
  // Now a plain hit: no upstream traffic.
  s.front.reset();
  const hit = await request(s.cache.url, blobPath(b.digest), { headers: { Range: 'bytes=5-9' } });
  assert.equal(hit.status, 206);
  assert.equal(s.front.requests.length, 0);
});

test('HEAD of a blob not yet cached, after a restart (its size no longer in memory): the size from upstream, whose CDN refuses HEAD, for one byte', async () => {
  const b = await freshBlob(3 * MiB, 'head');
  // A second server on the same data folder knows the manifest (on disk) but not the blob's size.
  const again = await startTestRegistry({ data: s.cache.data, config: { upstreams: s.cache.app.config.upstreams, routes: s.cache.app.config.routes } });
  try {
    s.front.reset();
    const r = await request(again.url, blobPath(b.digest), { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(b.size));
    // The upstream client's fallback ran: HEAD refused by the CDN, then a one-byte ranged GET.
    assert.ok(s.front.requests.some((q) => q.host === 'cdn' && q.method === 'HEAD'), JSON.stringify(s.front.requests));
    assert.ok(s.front.requests.some((q) => q.host === 'cdn' && q.method === 'GET' && q.range === 'bytes=0-0'));
    assert.equal(s.front.blobBytes(), 1);
    assert.ok(!existsSync(path.join(s.cache.data, '.ollama-registry', 'scratch', 'fills', `sha256-${b.digest.slice(7)}`)));
    const miss = await request(again.url, `/v2/library/big/blobs/sha256:${'0'.repeat(64)}`, { method: 'HEAD' });
    assert.equal(miss.status, 404);
  } finally {
    await again.app.cache?.close();
    await again.close();
  }
});

test("ollama's probe GET that hangs up: the fill goes on alone and completes, each byte fetched once", async () => {
  const b = await freshBlob(8 * MiB, 'probe');
  s.front.reset();
  await new Promise<void>((resolve, reject) => {
    const req = http.get(`${s.cache.url}${blobPath(b.digest)}`, { agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.ok(res.headers.location);
      res.destroy();
      resolve();
    });
    req.on('error', reject);
  });
  await waitFor(() => existsSync(path.join(s.cache.data, 'blobs', `sha256-${b.digest.slice(7)}`)));
  assert.equal(s.front.blobBytes(), b.size);
  const r = await request(s.cache.url, blobPath(b.digest));
  assert.equal(sha(r.body), b.digest);
});

test('16 concurrent whole-blob clients share one fill: upstream bytes equal the blob size', async () => {
  const b = await freshBlob(8 * MiB, 'sixteen');
  s.front.reset();
  const all = await Promise.all(Array.from({ length: 16 }, () => request(s.cache.url, blobPath(b.digest))));
  for (const r of all) {
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), b.digest);
  }
  assert.equal(s.front.blobBytes(), b.size, JSON.stringify(s.front.requests));
});

test("ollama's 16 ranged parts: every part gets its own upstream ranges at once, no byte twice", async () => {
  const b = await freshBlob(32 * MiB, 'parts');
  s.front.reset();
  const part = 2 * MiB;
  const parts = await Promise.all(Array.from({ length: 16 }, async (_, k) => {
    const r = await request(s.cache.url, blobPath(b.digest), { headers: { Range: `bytes=${k * part}-${(k + 1) * part - 1}` } });
    assert.equal(r.status, 206);
    return r.body;
  }));
  assert.equal(sha(Buffer.concat(parts)), b.digest);
  assert.equal(s.front.blobBytes(), b.size);
  // The upstream saw ranged requests starting inside the late parts, not one sequential stream.
  const starts = s.front.requests.filter((q) => q.range).map((q) => Number(/bytes=(\d+)-/.exec(q.range!)![1]));
  assert.ok(starts.filter((x) => x >= 8 * part).length >= 4, `ranges started at ${starts.join(',')}`);
});

test('the core pull (an emulated stock ollama client) runs cold through the cache: upstream bytes = model size', async () => {
  const m = await makeModel(s.upstream.data, { model: 'corepull', tag: 'v1', layers: [
    { mediaType: 'application/vnd.ollama.image.model', size: 12 * MiB },
    { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
  ] });
  s.front.reset();
  const modelsDir = await tempDir();
  const res = await ollamaPull(`${s.cache.hostPort}/library/corepull:v1`, { modelsDir, partSize: 1 * MiB });
  assert.equal(res.downloaded.length, m.blobs.length);
  for (const blob of m.blobs) {
    assert.equal(sha(await readFile(path.join(modelsDir, 'blobs', `sha256-${blob.digest.slice(7)}`))), blob.digest);
  }
  const total = m.blobs.reduce((n, x) => n + x.size, 0);
  assert.equal(s.front.blobBytes(), total);
  // A second machine pulling the same model costs the upstream nothing.
  s.front.reset();
  await ollamaPull(`${s.cache.hostPort}/library/corepull:v1`, { modelsDir: await tempDir(), partSize: 1 * MiB });
  assert.equal(s.front.blobBytes(), 0);
});

test('a 64 MiB fill reuses its 1 MiB batches: a reader stalled at the frontier, fast readers and one that leaves all get exactly the right bytes', async () => {
  const b = await freshBlob(64 * MiB, 'batches');
  s.front.reset();
  // Stalled: reads its first bytes, then stops reading for a second while the fill runs far past the
  // recent window (32 MiB), so the batches its socket still holds would be reused if holding failed.
  const stalled = new Promise<Buffer>((resolve, reject) => {
    http.get(`${s.cache.url}${blobPath(b.digest)}`, { agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        parts.push(c);
        if (parts.length === 1) {
          res.pause();
          setTimeout(() => res.resume(), 1000);
        }
      });
      res.on('end', () => resolve(Buffer.concat(parts)));
      res.on('error', reject);
    }).on('error', reject);
  });
  const leaver = new Promise<void>((resolve) => {
    http.get(`${s.cache.url}${blobPath(b.digest)}`, { agent: false }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > 3 * MiB) res.destroy();
      });
      res.on('close', () => resolve());
    }).on('error', () => resolve());
  });
  const fast = Promise.all(Array.from({ length: 4 }, () => request(s.cache.url, blobPath(b.digest))));
  for (const r of await fast) assert.equal(sha(r.body), b.digest);
  await leaver;
  assert.equal(sha(await stalled), b.digest);
  assert.equal(s.front.blobBytes(), b.size);
});
