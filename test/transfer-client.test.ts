// ollama's transfer client (tensor / safetensors models; protocol §3.6, §5.7), emulated from
// ollama's x/transfer, against the real registry over loopback: a pull of 200+ small tensor blobs
// (each probed with a whole GET, then fetched again), a push through POST ?digest= with
// X-Redirect-Uploads / X-Content-Length (and the sessions of failed attempts, which ollama never
// cancels), a cold pull through the cache that must still cross the upstream link once, stalls
// the client cannot cut itself, and resumes with `Range: bytes=N-` after a cut connection.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startCacheStack } from './support/cache.js';
import { eventually } from './support/eventually.js';
import { startFaultUpstream } from './support/fault-upstream.js';
import { makeModel, sha256File, type LayerSpec, type MadeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush, type RequestLog } from './support/ollama-client.js';
import { RESUME_THRESHOLD } from './support/ollama-transfer-pull.js';
import { TENSOR_MEDIA_TYPE, TRANSFER_USER_AGENT } from './support/ollama-transfer.js';
import { allowKey } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const KiB = 1024;
const MiB = 1 << 20;
const PUSH_HOST = 'ollama-registry.local';

/** A safetensors model as ollama's create writes it: many small tensors, a few big ones, named JSON files. */
function tensorLayers(seed: string, opts: { small?: number; big?: number[] } = {}): LayerSpec[] {
  const layers: LayerSpec[] = [];
  for (let i = 0; i < (opts.small ?? 200); i++) {
    layers.push({ mediaType: TENSOR_MEDIA_TYPE, size: 1 * KiB + ((i * 733) % (7 * KiB)), seed: `${seed}-t${i}`, name: `model.layers.${i}.weight` });
  }
  for (const [i, size] of (opts.big ?? [3 * MiB, 5 * MiB + 17, 2 * MiB]).entries()) {
    layers.push({ mediaType: TENSOR_MEDIA_TYPE, size, seed: `${seed}-big${i}`, name: `model.embed.${i}.weight` });
  }
  layers.push({ mediaType: 'application/vnd.ollama.image.json', content: `{"architectures":["Qwen3ForCausalLM"],"seed":"${seed}"}`, name: 'config.json' });
  layers.push({ mediaType: 'application/vnd.ollama.image.json', content: `{"model":{"type":"BPE"},"seed":"${seed}"}`, name: 'tokenizer.json' });
  return layers;
}

const safetensors = (seed: string) => ({ model_format: 'safetensors', model_family: 'qwen3', file_type: 'bf16', base_name: seed });
const total = (m: MadeModel) => m.blobs.reduce((n, b) => n + b.size, 0);
const blobFile = (dir: string, digest: string) => path.join(dir, 'blobs', `sha256-${digest.slice(7)}`);

async function assertAllBlobs(dir: string, m: MadeModel): Promise<void> {
  for (const b of m.blobs) assert.equal(await sha256File(blobFile(dir, b.digest)), b.digest, `blob ${b.digest} in ${dir}`);
}

const blobGets = (log: RequestLog[], digest: string) => log.filter((r) => r.method === 'GET' && r.url.endsWith(`/blobs/${digest}`));

let reg: TestRegistry;
before(async () => {
  reg = await startTestRegistry();
});
after(() => reg.close());

test('a tensor model of 206 blobs is pulled by the transfer client: each blob probed and fetched whole, ≤4 bodies at once, every digest right', async () => {
  const m = await makeModel(reg.data, { model: 'qwen3-mlx', tag: '8b', layers: tensorLayers('pull'), config: safetensors('pull') });
  const modelsDir = await tempDir('oreg-transfer-');
  const res = await ollamaPull(`${reg.hostPort}/library/qwen3-mlx:8b`, { modelsDir });
  assert.equal(res.downloaded.length, m.blobs.length);
  await assertAllBlobs(modelsDir, m);
  assert.deepEqual(await readFile(path.join(modelsDir, 'manifests', reg.hostPort, 'library', 'qwen3-mlx', '8b')), m.manifestBytes);
  for (const b of m.blobs) {
    const gets = blobGets(res.requests, b.digest);
    // The probe (body read to the end and thrown away), then the download: both whole, both 200.
    assert.deepEqual(gets.map((g) => [g.status, g.reqHeaders.range, g.reqHeaders['user-agent']]), [[200, undefined, TRANSFER_USER_AGENT], [200, undefined, TRANSFER_USER_AGENT]], b.digest);
    assert.equal(gets[0]!.resHeaders['content-length'], String(b.size));
  }
  assert.ok(res.maxBodiesInFlight! <= 4 && res.maxBodiesInFlight! >= 1, `bodies in flight: ${res.maxBodiesInFlight}`);
  const served = res.requests.filter((r) => r.url.includes('/blobs/')).reduce((n, r) => n + Number(r.resHeaders['content-length']), 0);
  console.log(`transfer pull: ${m.blobs.length} blobs, model ${total(m)} B, registry sent ${served} B (${(served / total(m)).toFixed(2)}×), ≤${res.maxBodiesInFlight} bodies at once`);
  // Without the MLX runtime ollama refuses the model after the manifest, before any blob.
  await assert.rejects(ollamaPull(`${reg.hostPort}/library/qwen3-mlx:8b`, { modelsDir: await tempDir(), mlx: false }), /requires MLX support/);
  // A second pull has every blob already: only the manifest is fetched.
  const again = await ollamaPull(`${reg.hostPort}/library/qwen3-mlx:8b`, { modelsDir });
  assert.equal(again.downloaded.length, 0);
  assert.equal(again.requests.filter((r) => r.url.includes('/blobs/')).length, 0);
});

test('a tensor model is pushed by the transfer client (POST ?digest + X-Content-Length, PATCH, finalize PUT) and stored verbatim', async () => {
  const key = makeOllamaKey();
  await allowKey(reg, key, 'team');
  const clientDir = await tempDir('oreg-transfer-push-');
  const m = await makeModel(clientDir, { host: reg.hostPort, namespace: 'team', model: 'tensors', tag: '1', layers: tensorLayers('push'), config: safetensors('push') });
  const res = await ollamaPush(`${reg.hostPort}/team/tensors:1`, { modelsDir: clientDir, key });
  assert.equal(res.uploaded.length, m.blobs.length);
  const posts = res.requests.filter((r) => r.method === 'POST');
  for (const b of m.blobs) {
    const mine = posts.filter((p) => p.url.endsWith(`/blobs/uploads/?digest=${encodeURIComponent(b.digest)}`));
    assert.ok(mine.length >= 1, b.digest);
    const last = mine.at(-1)!;
    assert.equal(last.status, 202);
    assert.equal(last.reqHeaders['x-redirect-uploads'], '2');
    assert.equal(last.reqHeaders['x-content-length'], String(b.size));
    assert.equal(last.reqHeaders['user-agent'], TRANSFER_USER_AGENT);
  }
  // Concurrent 401s share one token request per scope: a pull token for the (challenged) HEADs, then a push token.
  const scopes = res.requests.filter((r) => r.url.includes('/v2/token?')).map((r) => decodeURIComponent(/scope=([^&]+)/.exec(r.url)![1]!));
  assert.equal(scopes.length, 2, scopes.join(' '));
  assert.match(scopes[0]!, /:pull$/);
  assert.match(scopes[1]!, /:pull,push$|:push,pull$|:push$/);
  const patches = res.requests.filter((r) => r.method === 'PATCH');
  assert.equal(patches.length, m.blobs.length); // every blob is below 100 MiB: one part each
  assert.ok(patches.every((p) => p.status === 202 && p.reqHeaders['x-redirect-uploads'] === '1'));
  const finals = res.requests.filter((r) => r.method === 'PUT' && r.url.includes('/blobs/uploads/'));
  assert.equal(finals.length, m.blobs.length);
  assert.ok(finals.every((p) => p.status === 201 && /[?&]etag=[0-9a-f]{32}-1(&|$)/.test(p.url)));
  // The manifest: the local file's bytes (tensor layers keep their `name`), stored as sent.
  const put = res.requests.at(-1)!;
  assert.equal(put.method, 'PUT');
  assert.equal(put.status, 201);
  assert.deepEqual(await readFile(path.join(reg.data, 'manifests', PUSH_HOST, 'team', 'tensors', '1')), m.manifestBytes);
  await assertAllBlobs(reg.data, m);
  // Pulled back by another machine with the transfer client: the same bytes.
  const other = await tempDir('oreg-transfer-back-');
  await ollamaPull(`${reg.hostPort}/team/tensors:1`, { modelsDir: other });
  await assertAllBlobs(other, m);
  // Pushed again: HEAD finds every blob, nothing is uploaded, the manifest is PUT again.
  const again = await ollamaPush(`${reg.hostPort}/team/tensors:1`, { modelsDir: clientDir, key });
  assert.equal(again.skipped.length, m.blobs.length);
  assert.equal(again.requests.filter((r) => r.method === 'POST' || r.method === 'PATCH').length, 0);
  // To another repository: no blob bytes either, whether HEAD finds them there or POST ?digest=
  // answers 201 (a registry may keep blobs of other repositories out of HEAD).
  await mkdir(path.join(clientDir, 'manifests', reg.hostPort, 'team', 'copy'), { recursive: true });
  await writeFile(path.join(clientDir, 'manifests', reg.hostPort, 'team', 'copy', '1'), m.manifestBytes);
  const copy = await ollamaPush(`${reg.hostPort}/team/copy:1`, { modelsDir: clientDir, key });
  assert.equal(copy.skipped.length + copy.mounted.length, m.blobs.length);
  assert.equal(copy.requests.filter((r) => r.method === 'PATCH').length, 0);
  assert.deepEqual(await readFile(path.join(reg.data, 'manifests', PUSH_HOST, 'team', 'copy', '1')), m.manifestBytes);
});

/** Upload sessions in the data folder that were never committed. */
async function openSessions(data: string): Promise<string[]> {
  const dir = path.join(data, '.ollama-registry', 'uploads');
  const open: string[] = [];
  for (const id of await readdir(dir).catch(() => [] as string[])) {
    const info = JSON.parse(await readFile(path.join(dir, id, 'info.json'), 'utf8').catch(() => '{}')) as { committed?: string };
    if (!info.committed) open.push(id);
  }
  return open;
}

test('a blob whose first attempt failed is pushed in a new session, and the abandoned session goes when the blob is committed', async () => {
  const key = makeOllamaKey();
  await allowKey(reg, key, 'retry');
  const clientDir = await tempDir('oreg-transfer-retry-');
  const m = await makeModel(clientDir, {
    host: reg.hostPort, namespace: 'retry', model: 'tensors', tag: '1', layers: tensorLayers('retry', { small: 30, big: [1 * MiB] }), config: safetensors('retry'),
  });
  const failed = m.blobs.slice(0, 8).map((b) => b.digest);
  const res = await ollamaPush(`${reg.hostPort}/retry/tensors:1`, { modelsDir: clientDir, key, failFirstAttempt: failed });
  assert.equal(res.uploaded.length, m.blobs.length);
  for (const d of failed) {
    const posts = res.requests.filter((r) => r.method === 'POST' && r.status === 202 && r.url.endsWith(`?digest=${encodeURIComponent(d)}`));
    assert.equal(posts.length, 2, `two sessions for ${d}`);
  }
  await assertAllBlobs(reg.data, m);
  // ollama never cancels the session it gave up on: without this, each one would be held (and
  // count against the pusher) until uploadMaxAgeHours. They go just after the commit's answer.
  await eventually(async () => assert.deepEqual(await openSessions(reg.data), []));
});

test('a cold pull of a tensor model through the cache: the double GET still crosses the upstream link once (1.00×)', async () => {
  const s = await startCacheStack();
  try {
    const m = await makeModel(s.upstream.data, { model: 'qwen3-mlx', tag: 'cold', layers: tensorLayers('cold'), config: safetensors('cold') });
    s.front.reset();
    const modelsDir = await tempDir('oreg-transfer-cache-');
    const res = await ollamaPull(`${s.cache.hostPort}/library/qwen3-mlx:cold`, { modelsDir });
    await assertAllBlobs(modelsDir, m);
    for (const b of m.blobs) assert.equal(blobGets(res.requests, b.digest).length, 2);
    const upstream = s.front.blobBytes();
    console.log(`cold transfer pull through the cache: ${m.blobs.length} blobs, model ${total(m)} B, upstream ${upstream} B (${(upstream / total(m)).toFixed(2)}×)`);
    assert.equal(upstream, total(m));
    // Another machine: nothing crosses the link.
    s.front.reset();
    const second = await tempDir('oreg-transfer-cache2-');
    await ollamaPull(`${s.cache.hostPort}/library/qwen3-mlx:cold`, { modelsDir: second });
    await assertAllBlobs(second, m);
    assert.equal(s.front.blobBytes(), 0);
  } finally {
    await s.close();
  }
});

test('a ≥64 MiB blob whose download is cut is resumed with Range: bytes=N- (206), and ends intact', async () => {
  const big = RESUME_THRESHOLD + 3 * MiB + 5;
  const m = await makeModel(reg.data, { model: 'resume', tag: '1', layers: tensorLayers('resume', { small: 3, big: [big] }), config: safetensors('resume') });
  const bigDigest = m.blobs.find((b) => b.size === big)!.digest;
  // A front between client and registry that drops the connection of the big blob's second GET
  // (the download after the probe) 20 MiB into the body.
  const front = await startFaultUpstream(reg.url);
  let gets = 0;
  front.fault = (r) => (r.method === 'GET' && r.path.endsWith(bigDigest) && ++gets === 2 ? { kind: 'drop', after: 20 * MiB } : undefined);
  try {
    const modelsDir = await tempDir('oreg-transfer-resume-');
    const res = await ollamaPull(`${new URL(front.url).host}/library/resume:1`, { modelsDir });
    await assertAllBlobs(modelsDir, m);
    const seen = blobGets(res.requests, bigDigest);
    // probe, cut download, probe again, the resumed download.
    assert.equal(seen.length, 4, JSON.stringify(seen.map((g) => [g.status, g.reqHeaders.range])));
    const resumed = seen[3]!;
    const n = Number(/^bytes=(\d+)-$/.exec(resumed.reqHeaders.range ?? '')?.[1]);
    assert.ok(n > 0 && n <= 20 * MiB, `resumed at ${resumed.reqHeaders.range}`);
    assert.equal(resumed.status, 206);
    assert.equal(resumed.resHeaders['content-range'], `bytes ${n}-${big - 1}/${big}`);
    assert.equal(resumed.resHeaders['content-length'], String(big - n));
  } finally {
    await front.close();
  }
});

test('reads need a key: the push gets a pull token on its HEADs, then a push token; the pull sends the manifest\'s token on every blob GET', async () => {
  const keyed = await startTestRegistry({ config: { auth: { ...reg.app.config.auth, anonymousRead: false } } });
  try {
    const key = makeOllamaKey();
    await allowKey(keyed, key, 'team');
    const clientDir = await tempDir('oreg-transfer-keyed-push-');
    const m = await makeModel(clientDir, {
      host: keyed.hostPort, namespace: 'team', model: 'keyed', tag: '1', layers: tensorLayers('keyed', { small: 20, big: [1 * MiB] }), config: safetensors('keyed'),
    });
    const pushed = await ollamaPush(`${keyed.hostPort}/team/keyed:1`, { modelsDir: clientDir, key });
    assert.equal(pushed.uploaded.length, m.blobs.length);
    const scopes = pushed.requests.filter((r) => r.url.includes('/v2/token?')).map((r) => decodeURIComponent(/scope=([^&]+)/.exec(r.url)![1]!));
    assert.deepEqual(scopes, ['repository:team/keyed:pull', 'repository:team/keyed:pull,push']);
    const modelsDir = await tempDir('oreg-transfer-keyed-');
    await assert.rejects(ollamaPull(`${keyed.hostPort}/team/keyed:1`, { modelsDir }), /id_ed25519: no such file or directory/);
    const res = await ollamaPull(`${keyed.hostPort}/team/keyed:1`, { modelsDir, key });
    await assertAllBlobs(modelsDir, m);
    const gets = res.requests.filter((r) => r.url.includes('/blobs/'));
    assert.equal(gets.length, 2 * m.blobs.length);
    assert.ok(gets.every((g) => g.status === 200 && /^Bearer \S+$/.test(g.reqHeaders.authorization ?? '')));
    assert.equal(res.requests.filter((r) => r.url.includes('/v2/token?')).length, 1);
  } finally {
    await keyed.close();
  }
});

test('through the cache from a CDN-redirecting upstream that stalls mid-body: the pull still ends (ollama cannot cut a silent body itself)', { timeout: 120_000 }, async () => {
  const s = await startCacheStack();
  try {
    const m = await makeModel(s.upstream.data, { model: 'qwen3-mlx', tag: 'stall', layers: tensorLayers('stall', { small: 30, big: [4 * MiB] }), config: safetensors('stall') });
    const bigDigest = m.blobs.find((b) => b.size === 4 * MiB)!.digest;
    let stalled = 0;
    s.front.fault = (q) => (q.host === 'cdn' && q.method === 'GET' && q.path.endsWith(bigDigest) && stalled++ === 0 ? { kind: 'stall', after: 1 * MiB } : undefined);
    s.front.reset();
    const modelsDir = await tempDir('oreg-transfer-stall-');
    await ollamaPull(`${s.cache.hostPort}/library/qwen3-mlx:stall`, { modelsDir });
    await assertAllBlobs(modelsDir, m);
    assert.ok(stalled >= 2, 'the stalled range was asked for again');
    const upstream = s.front.blobBytes();
    console.log(`stalled upstream: model ${total(m)} B, upstream ${upstream} B (${(upstream / total(m)).toFixed(2)}×)`);
    assert.ok(upstream >= total(m) && upstream <= total(m) + 1 * MiB, `upstream bytes ${upstream}`);
  } finally {
    await s.close();
  }
});

test('through the cache, a cold ≥64 MiB blob cut on its way to the client is resumed with Range: bytes=N-, still 1.00× upstream', { timeout: 300_000 }, async () => {
  const s = await startCacheStack();
  const big = RESUME_THRESHOLD + 1 * MiB;
  const m = await makeModel(s.upstream.data, { model: 'resume', tag: 'cache', layers: tensorLayers('resume-cache', { small: 2, big: [big] }), config: safetensors('resume-cache') });
  const bigDigest = m.blobs.find((b) => b.size === big)!.digest;
  // The cut is between the client and the cache; the cache's own upstream link is counted.
  const front = await startFaultUpstream(s.cache.url);
  let gets = 0;
  front.fault = (r) => (r.method === 'GET' && r.path.endsWith(bigDigest) && ++gets === 2 ? { kind: 'drop', after: 16 * MiB } : undefined);
  try {
    s.front.reset();
    const modelsDir = await tempDir('oreg-transfer-resume-cache-');
    const res = await ollamaPull(`${new URL(front.url).host}/library/resume:cache`, { modelsDir });
    await assertAllBlobs(modelsDir, m);
    const seen = blobGets(res.requests, bigDigest);
    assert.equal(seen.length, 4, JSON.stringify(seen.map((g) => [g.status, g.reqHeaders.range])));
    assert.match(seen[3]!.reqHeaders.range ?? '', /^bytes=[1-9]\d*-$/);
    assert.equal(seen[3]!.status, 206);
    assert.equal(s.front.blobBytes(), total(m));
  } finally {
    await front.close();
    await s.close();
  }
});
