// A full disk: an 8 MiB tmpfs mounted by the test. Imports, a push by the ollama client (the
// real upload path) and exports fail with a clear error, and nothing half-written stays visible.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush, type OllamaError } from './support/ollama-client.js';
import { allowKey } from './support/registry-auth.js';
import { startTestRegistry, tempDir } from './support/server.js';
import { defaults } from '../src/config.js';
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

test('a push onto a full disk (the ollama client: POST, PATCH parts, PUT) answers 507 with a one-line error; nothing half-written stays', async (t) => {
  const data = await onDisk(t, 'http');
  if (!data) return;
  // No free-space floor: this is about the disk really filling up (ENOSPC); the floor has its own tests.
  const reg = await startTestRegistry({ data, config: { storage: { ...defaults().storage, minFree: { bytes: 0 } } } });
  const key = makeOllamaKey();
  await allowKey(reg, key, 'team');
  const client = await tempDir('oreg-pushclient-');
  const big = await makeModel(client, { host: reg.hostPort, namespace: 'team', model: 'big', tag: '1', layers: [{ mediaType: MODEL, size: 12_000_000, seed: 'big' }] });
  try {
    const err = await ollamaPush(`${reg.hostPort}/team/big:1`, { modelsDir: client, key, partSize: 1_000_000 }).then(() => undefined, (e: OllamaError) => e);
    assert.ok(err, 'the push fails');
    const refused = err.requests.filter((r) => r.status === 507);
    assert.ok(refused.length > 0 && refused.every((r) => r.method === 'PATCH' || r.method === 'PUT'), err.requests.map((r) => `${r.method} ${r.status}`).join(', '));
    // What ollama prints: its last try's status and the one-line JSON body.
    assert.match(err.message, /^max retries exceeded: http status 507 Insufficient Storage: \{"errors":\[\{"code":"INSUFFICIENT_STORAGE","message":"(no space left on the registry's disk while writing upload [0-9a-f-]{36}|the registry's disk has [\d.]+ [KM]?B free and keeps 0 B free \(storage\.minFree\): no room for [\d.]+ MB for upload [0-9a-f-]{36}; try again after space was freed)"\}\]\}$/);
    // Nothing of the big model is visible (the upload session stays, for ollama to resume), and the store is consistent.
    const files = await allFiles(data);
    assert.ok(files.every((f) => /^\.ollama-registry\/(keys\.json|token-secret|nonces\/[0-9a-f]{32}|uploads\/[0-9a-f-]{36}\/info\.json|scratch\/uploads\/[0-9a-f-]{36})$/.test(f)), files.join(', '));
    assert.equal((await request(reg.url, '/v2/team/big/manifests/1')).status, 404);
    const v = await cli(['verify', '--data', data]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    // The registry keeps working: a model that fits is pushed and pulled back.
    const small = await makeModel(client, { host: reg.hostPort, namespace: 'team', model: 'small', tag: '1', layers: [{ mediaType: MODEL, size: 1000, seed: 's' }] });
    await ollamaPush(`${reg.hostPort}/team/small:1`, { modelsDir: client, key });
    const back = await ollamaPull(`${reg.hostPort}/team/small:1`, { modelsDir: await tempDir('oreg-pullclient-') });
    assert.deepEqual(back.manifestBytes, small.manifestBytes);
    assert.ok(big.blobs.length > 0);
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
