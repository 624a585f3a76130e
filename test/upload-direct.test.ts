// Upload parts of several MiB at offsets that are not on page boundaries (ollama's parts are
// 100 MB, decimal), written with O_DIRECT where the file system takes it and buffered otherwise:
// retried parts, a part cut off mid-body, a restart between parts; the blob must be byte-exact.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { directIo, useDirectIo } from '../src/registry/uploads/part-writer.js';
import { request, type RawResponse } from './support/http.js';
import { sha256Hex } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let data: string;
const AUTH = { Authorization: `Basic ${Buffer.from('ci:pw').toString('base64')}` };
const bytes = randomBytes(26_000_003);
const PARTS = [[0, 9_999_999], [9_999_999, 17_000_000], [17_000_000, bytes.length]] as const;

async function start(): Promise<void> {
  reg = await startTestRegistry({ data });
  await addUser(reg, 'ci', 'pw', 'team');
}

before(async () => {
  data = await tempDir('oreg-direct-');
  await start();
});
after(() => reg.close());

function call(p: string, method: string, headers: Record<string, string | number> = {}, body?: Buffer): Promise<RawResponse> {
  return request(reg.url, p, { method, headers: { ...AUTH, ...headers }, body });
}

function patch(loc: string, [s, e]: readonly [number, number]): Promise<RawResponse> {
  return call(loc, 'PATCH', { 'Content-Range': `${s}-${e - 1}`, 'Content-Type': 'application/octet-stream' }, bytes.subarray(s, e));
}

/** Sends the headers and the first half of a part, then drops the connection. */
async function cutPatch(loc: string, [s, e]: readonly [number, number]): Promise<void> {
  const u = new URL(reg.url);
  const sock = net.connect(Number(u.port), u.hostname);
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  sock.write(`PATCH ${loc} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: ${AUTH.Authorization}\r\nContent-Range: ${s}-${e - 1}\r\nContent-Length: ${e - s}\r\n\r\n`);
  await new Promise<void>((r) => sock.write(bytes.subarray(s, s + ((e - s) >> 1)), () => r()));
  await new Promise((r) => setTimeout(r, 100));
  sock.destroy();
}

/** The session's Range, once it settles on `want` (a cut part is truncated after the socket closes). */
async function rangeBecomes(loc: string, want: string): Promise<void> {
  let got = '';
  for (let i = 0; i < 100 && got !== want; i++) {
    got = String((await call(loc, 'GET')).headers.range);
    if (got !== want) await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(got, want);
}

async function pushAll(repo: string): Promise<void> {
  const post = await call(`/v2/${repo}/blobs/uploads/`, 'POST');
  assert.equal(post.status, 202);
  const loc = new URL(String(post.headers.location)).pathname;
  assert.equal((await patch(loc, PARTS[0])).status, 202);
  assert.equal((await patch(loc, PARTS[1])).status, 202);
  // ollama's retry of a part whose answer was lost: the same range again.
  const again = await patch(loc, PARTS[1]);
  assert.equal(again.status, 202);
  assert.equal(again.headers.range, `0-${PARTS[1][1] - 1}`);
  // A part cut off mid-body leaves nothing of itself.
  await cutPatch(loc, PARTS[2]);
  await rangeBecomes(loc, `0-${PARTS[1][1] - 1}`);
  // A restart between parts: the next part re-hashes what is kept.
  await reg.close();
  await start();
  assert.equal((await patch(loc, PARTS[2])).status, 202);
  const digest = `sha256:${sha256Hex(bytes)}`;
  const put = await call(`${loc}?digest=${encodeURIComponent(digest)}`, 'PUT', { 'Content-Length': 0 });
  assert.equal(put.status, 201, put.text());
  const blob = await call(`/v2/${repo}/blobs/${digest}`, 'GET');
  assert.equal(blob.status, 200);
  assert.ok(blob.body.equals(bytes), 'the stored blob differs from what was pushed');
}

test('unaligned multi-MiB parts with O_DIRECT: retried, cut off, resumed after a restart; byte-exact', async () => {
  useDirectIo(true);
  await pushAll('team/direct');
  assert.equal(directIo(), true, 'this file system should take O_DIRECT writes');
});

test('the same with buffered writes (file systems that refuse O_DIRECT)', async (t) => {
  useDirectIo(false);
  t.after(() => useDirectIo(true));
  await pushAll('team/buffered');
});

test('a chunked part longer than its Content-Range is refused and leaves nothing', async () => {
  const post = await call('/v2/team/long/blobs/uploads/', 'POST');
  const loc = new URL(String(post.headers.location)).pathname;
  assert.equal((await patch(loc, [0, 5_000_001])).status, 202);
  const u = new URL(reg.url);
  const sock = net.connect(Number(u.port), u.hostname);
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  const extra = bytes.subarray(5_000_001, 5_000_001 + 6_000_000);
  let answer = '';
  sock.on('data', (c: Buffer) => (answer += c.toString('latin1'))); // read it, so the server's close is seen
  const closed = new Promise((r) => sock.once('close', r));
  sock.write(`PATCH ${loc} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: ${AUTH.Authorization}\r\nContent-Range: 5000001-5999999\r\n` +
    `Transfer-Encoding: chunked\r\n\r\n${extra.length.toString(16)}\r\n`);
  sock.write(extra);
  sock.end('\r\n0\r\n\r\n');
  await closed;
  assert.match(answer, /^HTTP\/1\.1 400 /);
  await rangeBecomes(loc, '0-5000000');
});

test('six uploads at once (more than the aligned slots serve, so some go buffered): each blob byte-exact, a wrong digest refused', async () => {
  // Hash states of concurrent uploads share the hashing threads and slots are reused while parts
  // arrive: every blob must still hash to its own bytes.
  const blobs = Array.from({ length: 6 }, (_, i) => bytes.subarray(i * 1_000_003, i * 1_000_003 + 19_000_001));
  const done = await Promise.all(blobs.map(async (b, i) => {
    const post = await call(`/v2/team/many${i}/blobs/uploads/`, 'POST');
    const loc = new URL(String(post.headers.location)).pathname;
    for (const [s, e] of [[0, 9_500_000], [9_500_000, b.length]] as const) {
      const r = await call(loc, 'PATCH', { 'Content-Range': `${s}-${e - 1}`, 'Content-Type': 'application/octet-stream' }, b.subarray(s, e));
      assert.equal(r.status, 202, r.text());
    }
    // The last one claims the digest of another upload's bytes.
    const digest = `sha256:${sha256Hex(i === 5 ? blobs[0]! : b)}`;
    const put = await call(`${loc}?digest=${encodeURIComponent(digest)}`, 'PUT', { 'Content-Length': 0 });
    return { put, digest };
  }));
  for (const [i, { put, digest }] of done.entries()) {
    if (i === 5) {
      assert.equal(put.status, 400, put.text());
      assert.match(put.text(), /DIGEST_INVALID/);
      continue;
    }
    assert.equal(put.status, 201, put.text());
    const blob = await call(`/v2/team/many${i}/blobs/${digest}`, 'GET');
    assert.ok(blob.body.equals(blobs[i]!), `blob ${i} differs from what was pushed`);
  }
});
