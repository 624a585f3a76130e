// A small disk (a 16 MiB tmpfs) under a pull-through cache and pushes: a fill that runs out of
// room frees its bytes at once, a fill that cannot fit is refused before a byte is written, and
// below storage.minFree writes get 507 while /readyz says not ready (and /healthz stays up).
import assert from 'node:assert/strict';
import { open, readdir, rm, statfs } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { defaults } from '../src/config.js';
import { parseSize } from '../src/units.js';
import { startCacheStack } from './support/cache.js';
import { waitFor } from './support/eventually.js';
import { request } from './support/http.js';
import { makeModel, sha256Hex } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';
import { mountTmpfs, needTmpfs, type Tmpfs } from './support/tmpfs.js';

const MiB = 1 << 20;
const MODEL = 'application/vnd.ollama.image.model';
const AUTH = { Authorization: `Basic ${Buffer.from('ci:pw').toString('base64')}` };
let small: Tmpfs;

before(async () => {
  small = await mountTmpfs('16m');
});
after(() => small.unmount());

/** The small disk, emptied, with a data folder on it. */
async function emptyDisk(t: TestContext): Promise<{ disk: string; data: string } | null> {
  const disk = needTmpfs(t, small);
  if (!disk) return null;
  for (const e of await readdir(disk)) await rm(path.join(disk, e), { recursive: true, force: true });
  return { disk, data: path.join(disk, 'data') };
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Write a file until the disk is full (or `max` bytes); the file stays. */
async function fillUp(file: string, max = Infinity): Promise<number> {
  const fh = await open(file, 'w');
  const chunk = Buffer.alloc(256 << 10, 1);
  let n = 0;
  try {
    while (n < max) n += (await fh.write(chunk, 0, Math.min(chunk.length, max - n))).bytesWritten;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    await fh.close();
  }
  return n;
}

/** Push one blob through a session (POST, PATCH, PUT): the status of the step that refused, or 201. */
async function push(reg: TestRegistry, bytes: Buffer): Promise<{ status: number; body: string }> {
  const open = await request(reg.url, '/v2/team/m/blobs/uploads/', { method: 'POST', headers: AUTH });
  if (open.status !== 202) return { status: open.status, body: open.text() };
  const loc = new URL(String(open.headers.location)).pathname;
  const part = await request(reg.url, loc, { method: 'PATCH', headers: { ...AUTH, 'Content-Range': `0-${bytes.length - 1}`, 'Content-Length': bytes.length }, body: bytes });
  if (part.status !== 202) return { status: part.status, body: part.text() };
  const done = await request(reg.url, `${loc}?digest=sha256:${sha256Hex(bytes)}`, { method: 'PUT', headers: AUTH });
  return { status: done.status, body: done.text() };
}

test('a fill that runs out of disk frees its bytes at once, and the next push fits in them', { timeout: 60_000 }, async (t) => {
  const where = await emptyDisk(t);
  if (!where) return;
  // No floor: the fill meets the disk's own ENOSPC.
  const stack = await startCacheStack({ rate: 4 * MiB, cacheData: where.data, config: { storage: { ...defaults().storage, minFree: { bytes: 0 } } } });
  try {
    await addUser(stack.cache, 'ci', 'pw', 'team');
    const m = await makeModel(stack.upstream.data, { model: 'big', layers: [{ mediaType: MODEL, size: 10 * MiB }] });
    const b = m.blobs[0]!;
    const fillDir = path.join(where.data, '.ollama-registry', 'scratch', 'fills', `sha256-${b.digest.slice(7)}`);
    assert.equal((await request(stack.cache.url, '/v2/library/big/manifests/latest')).status, 200); // first, as ollama asks
    let got = 0;
    const client = new Promise<void>((resolve) => {
      const req = http.get(`${stack.cache.url}/v2/library/big/blobs/${b.digest}`, { agent: false }, (res) => {
        res.on('data', (c: Buffer) => { got += c.length; });
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve());
    });
    // Once bytes are landing, something else takes the rest of the disk.
    await waitFor(() => got >= 1 * MiB);
    await fillUp(path.join(where.disk, 'filler'));
    await client;
    assert.ok(got < b.size, 'the client was cut off');
    // The fill's bytes are gone without waiting for gc or a restart.
    await waitFor(async () => !(await readdir(path.join(where.data, '.ollama-registry', 'scratch', 'fills')).catch(() => [])).length);
    assert.deepEqual(await readdir(fillDir).catch(() => 'gone'), 'gone');
    assert.ok(!(await readdir(path.join(where.data, 'blobs'))).length);
    // The room the fill had is free again: a push of a blob that fits there works.
    assert.ok(await freeBytes(where.disk) >= 512 << 10);
    const r = await push(stack.cache, Buffer.alloc(256 << 10, 3));
    assert.equal(r.status, 201, r.body);
  } finally {
    await stack.close();
  }
});

test('a fill larger than the room above storage.minFree is refused with 507 before a byte is written', { timeout: 30_000 }, async (t) => {
  const where = await emptyDisk(t);
  if (!where) return;
  const stack = await startCacheStack({ cacheData: where.data });
  try {
    const m = await makeModel(stack.upstream.data, { model: 'huge', layers: [{ mediaType: MODEL, size: 20 * MiB }] });
    const b = m.blobs[0]!;
    assert.equal((await request(stack.cache.url, '/v2/library/huge/manifests/latest')).status, 200); // first, as ollama asks
    const before = await freeBytes(where.disk);
    const r = await request(stack.cache.url, `/v2/library/huge/blobs/${b.digest}`);
    assert.equal(r.status, 507, r.text());
    assert.equal(r.json().errors[0].code, 'INSUFFICIENT_STORAGE');
    assert.match(r.json().errors[0].message, /^the registry's disk has [\d.]+ [KM]B free and keeps [\d.]+ [KM]?B free \(storage\.minFree\): no room for 2[01](\.\d)? MB for blob sha256:[0-9a-f]{64}; try again after space was freed$/);
    assert.deepEqual(await readdir(path.join(where.data, '.ollama-registry', 'scratch', 'fills')).catch(() => []), []);
    assert.equal(await freeBytes(where.disk), before, 'the disk is as it was');
    // At most the 1-byte size probe (the CDN refuses HEAD, as registry.ollama.ai's does).
    assert.ok(stack.front.blobBytes() <= 1, `nothing of the blob was fetched (${stack.front.blobBytes()} B)`);
  } finally {
    await stack.close();
  }
});

test('below storage.minFree pushes get 507 and /readyz is not ready; /healthz stays up; freeing space makes it ready again', { timeout: 30_000 }, async (t) => {
  const where = await emptyDisk(t);
  if (!where) return;
  const reg = await startTestRegistry({ data: where.data, config: { storage: { ...defaults().storage, minFree: { bytes: parseSize('8MiB')! } } } });
  try {
    await addUser(reg, 'ci', 'pw', 'team');
    assert.equal((await request(reg.url, '/readyz')).status, 200);
    // Leave about 6 MiB free: under the 8 MiB floor.
    await fillUp(path.join(where.disk, 'filler'), (await freeBytes(where.disk)) - 6 * MiB);
    // /readyz reads the disk's figures afresh (writes use them up to a second old).
    const ready = await request(reg.url, '/readyz');
    assert.equal(ready.status, 503);
    assert.equal(ready.json().status, 'not ready');
    assert.match(ready.json().checks.disk, /^[\d.]+ MB free, below storage\.minFree \(8\.4 MB\): pushes and fills are refused$/);
    const refused = await push(reg, Buffer.from('a small layer'));
    assert.equal(refused.status, 507, refused.body);
    assert.match(JSON.parse(refused.body).errors[0].message, /^the registry's disk has [\d.]+ MB free and keeps 8\.4 MB free \(storage\.minFree\): no room for a new upload; try again after space was freed$/);
    const mono = Buffer.from('monolithic');
    const r2 = await request(reg.url, `/v2/team/m/blobs/uploads/?digest=sha256:${sha256Hex(mono)}`, { method: 'POST', headers: { ...AUTH, 'Content-Length': mono.length }, body: mono });
    assert.equal(r2.status, 507, r2.text());
    assert.equal((await request(reg.url, '/healthz')).status, 200);
    assert.deepEqual(await readdir(path.join(where.data, 'blobs')), []);

    await rm(path.join(where.disk, 'filler'));
    const again = await request(reg.url, '/readyz');
    assert.equal(again.status, 200, again.text());
    assert.equal(again.json().checks.disk, 'ok');
    const ok = await push(reg, Buffer.from('a small layer'));
    assert.equal(ok.status, 201, ok.body);
  } finally {
    await reg.close();
  }
});
