// A full disk: an 8 MiB tmpfs mounted by the test. Imports, an HTTP blob write and exports
// fail with a clear error, and nothing half-written stays visible.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test, type TestContext } from 'node:test';
import { sendJson } from '../src/http/respond.js';
import { v2Handlers, type HandlerTable } from '../src/http/server.js';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { addUser } from './support/registry-auth.js';
import { makeModel, sha256Hex } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';
import { mountTmpfs, needTmpfs, type Tmpfs } from './support/tmpfs.js';

const MODEL = 'application/vnd.ollama.image.model';
let small: Tmpfs;

before(async () => {
  small = await mountTmpfs('8m');
});

after(() => small.unmount());

/** A fresh, empty folder on the small disk, or a skip with the reason (a failure under CI=true). */
async function onDisk(t: TestContext, name: string): Promise<string | null> {
  const disk = needTmpfs(t, small);
  if (!disk) return null;
  for (const e of await readdir(disk)) await rm(path.join(disk, e), { recursive: true, force: true });
  const d = path.join(disk, name);
  await mkdir(d);
  return d;
}

/** Every file under a folder (relative); staging leftovers would show here. */
async function allFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))).sort();
}

test('import of a folder and of a tar onto a full disk: a clear error, the store stays consistent', async (t) => {
  const data = await onDisk(t, 'data');
  if (!data) return;
  const src = await tempDir();
  await makeModel(src, { model: 'a-small', layers: [{ mediaType: MODEL, size: 1_000_000, seed: 's' }] });
  await makeModel(src, { model: 'b-big', layers: [{ mediaType: MODEL, size: 12_000_000, seed: 'b' }] });
  const r = await cli(['import', src, '--data', data]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^ollama-registry: no space left on the registry's disk while importing blobs\/sha256-[0-9a-f]{64}; the import stopped, and nothing half-written was kept\n$/);
  assert.deepEqual(await readdir(path.join(data, '.ollama-registry', 'tmp')), []);
  assert.deepEqual((await allFiles(path.join(data, 'manifests'))), ['registry.ollama.ai/library/a-small/latest']);
  const v = await cli(['verify', '--data', data]);
  assert.equal(v.code, 0, v.stdout);

  const file = path.join(await tempDir('oreg-out-'), 'big.tar');
  assert.equal((await cli(['export', 'b-big', '--to', file, '--data', src])).code, 0);
  const tr = await cli(['import', file, '--data', data]);
  assert.equal(tr.code, 1);
  assert.match(tr.stderr, /^ollama-registry: no space left on the registry's disk for blob sha256:[0-9a-f]{64}; nothing of it was kept; the import stopped$/m);
  assert.deepEqual(await readdir(path.join(data, '.ollama-registry', 'tmp')), []);
  assert.equal((await cli(['verify', '--data', data])).code, 0);
});

test('an HTTP blob write onto a full disk answers 507 with a one-line JSON error; nothing half-written stays', async (t) => {
  const data = await onDisk(t, 'http');
  if (!data) return;
  // A monolithic upload handler over BlobStore.put, the store call a push ends in.
  const table: HandlerTable = v2Handlers();
  table.uploads = {
    POST: async ({ app, req, res, url }) => {
      const digest = url.searchParams.get('digest')!;
      const body = new PassThrough();
      req.pipe(body);
      try {
        await app.blobs.put(digest, body, Number(req.headers['content-length']));
      } catch (e) {
        // Read the rest so the client gets the answer instead of a reset.
        req.unpipe(body);
        req.resume();
        if (!req.complete) await new Promise((r) => req.once('end', r));
        throw e;
      }
      sendJson(res, 201, {});
    },
  };
  const reg = await startTestRegistry({ data, table });
  await addUser(reg, 'writer', 'pw', '*');
  const auth = `Basic ${Buffer.from('writer:pw').toString('base64')}`;
  try {
    const big = Buffer.alloc(12_000_000, 7);
    const r = await request(reg.url, `/v2/library/m/blobs/uploads/?digest=sha256:${sha256Hex(big)}`, { method: 'POST', body: big, headers: { 'Content-Length': big.length, Authorization: auth } });
    assert.equal(r.status, 507);
    assert.deepEqual(r.json(), { errors: [{ code: 'INSUFFICIENT_STORAGE', message: `no space left on the registry's disk for blob sha256:${sha256Hex(big)}; nothing of it was kept` }] });
    // Only the auth state the test itself made (the user) is on disk.
    assert.deepEqual(await allFiles(data), ['.ollama-registry/users.json']);
    // The registry keeps working once there is room.
    const small = Buffer.from('fits');
    const ok = await request(reg.url, `/v2/library/m/blobs/uploads/?digest=sha256:${sha256Hex(small)}`, { method: 'POST', body: small, headers: { 'Content-Length': small.length, Authorization: auth } });
    assert.equal(ok.status, 201);
  } finally {
    await reg.close();
  }
});

test('export onto a full disk (folder or tar): a clear error and no partial files', async (t) => {
  const out = await onDisk(t, 'usb');
  if (!out) return;
  const src = await tempDir();
  await makeModel(src, { model: 'big', layers: [{ mediaType: MODEL, size: 12_000_000, seed: 'b' }] });
  const r = await cli(['export', 'big', '--to', path.join(out, 'models'), '--data', src]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^ollama-registry: no space left on .*\/models while writing blobs\/sha256-[0-9a-f]{64}; what was written so far is complete\n$/);
  assert.ok((await allFiles(out)).every((f) => !f.includes('partial')));
  const tr = await cli(['export', 'big', '--to', path.join(out, 'big.tar'), '--data', src]);
  assert.equal(tr.code, 1);
  assert.match(tr.stderr, /^ollama-registry: no space left while writing .*big\.tar; nothing was left behind\n$/);
  assert.ok(!(await readdir(out)).some((f) => f.startsWith('big.tar')));
});
