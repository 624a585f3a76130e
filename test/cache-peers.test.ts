// Two `serve` processes on one data folder that do NOT share a scratch folder, as two replicas on
// two machines share only the store: the one that did not win a fill's lease reads the owner's
// bytes over the owner's internal endpoint (signed with the secret in the store), the link
// carries the blob once; when the owner is killed -9 its lease expires and the other one
// finishes the fill for its waiting client. The endpoint answers nobody else.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PEER_HEADER, peerSecret, signPeerRequest } from '../src/registry/pull-through/fill-peer.js';
import { FsDriver } from '../src/storage/fs.js';
import { frontedUpstream } from './support/fault-upstream.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { spawnRegistry, tempDir, type SpawnedRegistry } from './support/server.js';
import { waitFor } from './support/eventually.js';

const MiB = 1 << 20;
const MODEL = 'application/vnd.ollama.image.model';
const link = frontedUpstream();

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Two replicas on one data folder, each with its own scratch folder; leases expire after 2 s. */
async function replicas(data: string): Promise<Array<{ reg: SpawnedRegistry; scratch: string }>> {
  const out = [];
  for (const name of ['a', 'b']) {
    const scratch = await tempDir(`oreg-scratch-${name}-`);
    out.push({ reg: await spawnRegistry(['--data', data, '--upstream', link.front.url], { OLLAMA_REGISTRY_SCRATCH: scratch, OLLAMA_REGISTRY_LEASE: '2' }), scratch });
  }
  return out;
}

/** A 16 MiB model behind a link of `rate`, and two replicas that already read its manifest. */
async function setUp(tag: string, seed: string, rate: number) {
  const m = await makeModel(link.upstream.data, { model: 'peers', tag, layers: [{ mediaType: MODEL, size: 16 * MiB, seed }] });
  const b = m.blobs.find((x) => x.size === 16 * MiB)!;
  const data = await tempDir();
  link.front.reset();
  link.front.rate = rate;
  const [a, bb] = await replicas(data);
  // The manifest first on both, as ollama asks (behind a busy throttled link it would wait for the blob's bytes).
  for (const r of [a!, bb!]) assert.equal((await request(r.reg.url, `/v2/library/peers/manifests/${tag}`)).status, 200);
  return { b, data, a: a!, bb: bb! };
}

/** Start a fill on `owner` (a whole-blob GET), and wait until bytes flow into its scratch folder. */
async function startFill(owner: { reg: SpawnedRegistry; scratch: string }, repo: string, digest: string, atLeast: number) {
  const whole = request(owner.reg.url, `/v2/library/${repo}/blobs/${digest}`);
  whole.catch(() => {});
  await waitFor(() => link.front.blobBytes() >= atLeast && existsSync(path.join(owner.scratch, 'fills', `sha256-${digest.slice(7)}`)));
  return { whole }; // not the promise itself: an async function would wait for it
}

test('a replica with its own scratch folder follows the fill of another over its internal endpoint; the link carries the blob once', { timeout: 60_000 }, async () => {
  const { b, data, a, bb } = await setUp('latest', 'peers', 2 * MiB);
  try {
    const { whole: fromA } = await startFill(a, 'peers', b.digest, 1 * MiB);
    // A part the owner already has comes from it while the fill goes on (before the blob is in the store).
    const part = await request(bb.reg.url, `/v2/library/peers/blobs/${b.digest}`, { headers: { Range: `bytes=${512 << 10}-${MiB - 1}` } });
    assert.ok(!existsSync(path.join(data, 'blobs', `sha256-${b.digest.slice(7)}`)), 'answered before the blob was published');
    const whole = await request(bb.reg.url, `/v2/library/peers/blobs/${b.digest}`);
    assert.equal(whole.status, 200, whole.text().slice(0, 300));
    assert.equal(whole.headers['x-ollama-registry-cache'], 'filling', 'answered while the other replica was filling');
    assert.equal(sha(whole.body), b.digest);
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(whole.body.subarray(512 << 10, MiB)));
    assert.equal(sha((await fromA).body), b.digest);
    assert.ok(bb.reg.output().includes(`"via":"${a.reg.url}"`), 'followed through the owner\'s URL');
    assert.ok(!existsSync(path.join(bb.scratch, 'fills', `sha256-${b.digest.slice(7)}`)), 'the follower staged nothing');
    assert.equal(link.front.blobBytes(), b.size, 'the blob crossed the link once');
  } finally {
    await Promise.all([a.reg.stop(), bb.reg.stop()]);
  }
});

test('a follower\'s reader far ahead of the owner: the owner is told, fetches that range next, and the part arrives while the fill goes on', { timeout: 60_000 }, async () => {
  const { b, data, a, bb } = await setUp('ahead', 'peers-ahead', 1 * MiB);
  try {
    await startFill(a, 'peers', b.digest, 256 << 10);
    // As one of ollama's 16 parts: 12 MiB in, where the owner's one sequential lane is seconds away.
    const start = 12 * MiB;
    const part = await request(bb.reg.url, `/v2/library/peers/blobs/${b.digest}`, { headers: { Range: `bytes=${start}-${start + MiB - 1}` } });
    assert.equal(part.status, 206);
    const blob = await readFile(path.join(link.upstream.data, 'blobs', `sha256-${b.digest.slice(7)}`));
    assert.ok(part.body.equals(blob.subarray(start, start + MiB)));
    assert.ok(link.front.requests.some((q) => q.method === 'GET' && q.range?.startsWith(`bytes=${start}-`)), 'the owner opened a lane where the follower\'s reader waits');
    assert.ok(!existsSync(path.join(data, 'blobs', `sha256-${b.digest.slice(7)}`)), 'while the fill goes on');
  } finally {
    await Promise.all([a.reg.stop(), bb.reg.stop()]);
  }
});

test('the owning replica dies (kill -9): its lease expires, the replica with the other scratch folder finishes the fill for its waiting client', { timeout: 60_000 }, async () => {
  const { b, data, a, bb } = await setUp('v2', 'peers-takeover', 4 * MiB);
  try {
    await startFill(a, 'peers', b.digest, 2 * MiB);
    const fromB = request(bb.reg.url, `/v2/library/peers/blobs/${b.digest}`);
    await waitFor(() => /following it/.test(bb.reg.output()));
    // Cut the link first, so that every blob byte counted from here on is the new owner's.
    await link.front.down();
    await a.reg.stop('SIGKILL');
    link.front.reset();
    link.front.rate = 0;
    await link.front.up();
    const r = await fromB;
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), b.digest, 'the waiting client got the whole blob');
    assert.match(bb.reg.output(), /took over a fill/);
    assert.ok(existsSync(path.join(data, 'blobs', `sha256-${b.digest.slice(7)}`)), 'published in the store');
    // Across machines nothing partial is in the store: the new owner fetches the blob once, whole.
    assert.equal(link.front.blobBytes(), b.size);
  } finally {
    await Promise.all([a.reg.stop(), bb.reg.stop()]);
  }
});

test('the internal endpoint refuses unsigned, badly signed, expired and re-aimed requests, and answers only for a fill it owns', { timeout: 60_000 }, async () => {
  const { b, data, a, bb } = await setUp('v3', 'peers-auth', 2 * MiB);
  try {
    const secret = await peerSecret(new FsDriver(data));
    await startFill(a, 'peers', b.digest, 1 * MiB);
    const p = `/_internal/fills/sha256-${b.digest.slice(7)}`;
    const get = (url: string, headers: Record<string, string>) => request(url, p, { headers });
    const refused = async (headers: Record<string, string>, status: number, code: string, url = a.reg.url) => {
      const r = await get(url, headers);
      assert.equal(r.status, status, `${JSON.stringify(headers)}: ${r.text().slice(0, 200)}`);
      assert.equal(r.json().errors[0].code, code);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.ok(!r.text().includes('"have"'));
    };
    await refused({}, 401, 'UNAUTHORIZED');
    await refused({ Range: 'bytes=0-99' }, 401, 'UNAUTHORIZED');
    const other = Buffer.alloc(32, 7);
    await refused({ [PEER_HEADER]: signPeerRequest(other, p) }, 401, 'UNAUTHORIZED');
    await refused({ [PEER_HEADER]: signPeerRequest(secret, p, '', Date.now() - 120_000) }, 401, 'UNAUTHORIZED');
    await refused({ [PEER_HEADER]: signPeerRequest(secret, p, 'bytes=0-9'), Range: 'bytes=0-1048575' }, 401, 'UNAUTHORIZED');
    await refused({ [PEER_HEADER]: signPeerRequest(secret, `/_internal/fills/sha256-${'0'.repeat(64)}`) }, 401, 'UNAUTHORIZED');
    // Signed, but not a fill this process owns: the other replica (which follows it), and a digest nobody fills.
    request(bb.reg.url, `/v2/library/peers/blobs/${b.digest}`).catch(() => {});
    await waitFor(() => /following it/.test(bb.reg.output()));
    await refused({ [PEER_HEADER]: signPeerRequest(secret, p) }, 404, 'BLOB_UNKNOWN', bb.reg.url);
    const none = `/_internal/fills/sha256-${'0'.repeat(64)}`;
    const r404 = await request(a.reg.url, none, { headers: { [PEER_HEADER]: signPeerRequest(secret, none) } });
    assert.equal(r404.status, 404);
    // Signed, to the owner: its state, then only bytes it has.
    const st = await get(a.reg.url, { [PEER_HEADER]: signPeerRequest(secret, p) });
    assert.equal(st.status, 200, st.text());
    const have = (st.json() as { have: Array<[number, number]> }).have;
    assert.ok(have.length > 0 && have[0]![0] === 0);
    const range = `bytes=0-${b.size - 1}`;
    const part = await get(a.reg.url, { [PEER_HEADER]: signPeerRequest(secret, p, range), Range: range });
    assert.equal(part.status, 206);
    assert.ok(part.body.length >= have[0]![1] && part.body.length < b.size, `${part.body.length} bytes: what it had, never the last byte`);
    const blob = await readFile(path.join(link.upstream.data, 'blobs', `sha256-${b.digest.slice(7)}`));
    assert.ok(part.body.equals(blob.subarray(0, part.body.length)));
    const far = `bytes=${b.size - 1}-${b.size - 1}`;
    const r416 = await get(a.reg.url, { [PEER_HEADER]: signPeerRequest(secret, p, far), Range: far });
    assert.equal(r416.status, 416);
  } finally {
    await Promise.all([a.reg.stop(), bb.reg.stop()]);
  }
});
