// `serve` on stores other than a folder, end to end with the ollama client emulation: push a
// model, pull it back byte for byte, list its tags, delete the tag. On S3 (a real Ceph RADOS
// Gateway, configured by OLLAMA_REGISTRY_S3_* as an operator would) the data folder keeps only the
// scratch area; on the in-memory driver (tests only: openApp's `driver` option) nothing touches disk
// but the scratch area.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { openApp } from '../src/app.js';
import { defaults } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { runGc } from '../src/registry/housekeeping/gc.js';
import { exportToDir, planExport } from '../src/registry/transfer/exporter.js';
import { importFolder } from '../src/registry/transfer/importer.js';
import { verifyStore } from '../src/registry/housekeeping/verify.js';
import { MemoryDriver } from '../src/storage/memory.js';
import { S3Driver } from '../src/storage/s3.js';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush, type OllamaKey } from './support/ollama-client.js';
import { addUser, allowKey } from './support/registry-auth.js';
import { newBucket, S3_CREDENTIALS, s3Driver, s3Endpoint } from './support/s3.js';
import { spawnRegistry, startTestRegistry, tempDir } from './support/server.js';

const ADMIN = { Authorization: `Basic ${Buffer.from('admin:admin password').toString('base64')}` };

/** Files under a folder, relative to it (none when absent). */
async function files(dir: string): Promise<string[]> {
  const out = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return out.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

/** Push, pull back, list tags, delete: what a registry on any store must do. */
async function roundTrip(url: string, key: OllamaKey): Promise<string[]> {
  const hostPort = new URL(url).host;
  const clientDir = await tempDir('oreg-client-');
  const model = await makeModel(clientDir, {
    host: hostPort, namespace: 'team', model: 'llm', tag: '1',
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: 3_500_001, seed: 'on another store' },
      { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
    ],
  });
  const pushed = await ollamaPush(`${hostPort}/team/llm:1`, { modelsDir: clientDir, key, partSize: 1_000_000 });
  assert.equal(pushed.uploaded.length, model.blobs.length);
  const other = await tempDir('oreg-pullback-');
  await ollamaPull(`${hostPort}/team/llm:1`, { modelsDir: other });
  assert.deepEqual(await readFile(path.join(other, 'manifests', hostPort, 'team', 'llm', '1')), pushed.manifestBytes);
  for (const b of model.blobs) {
    const name = `sha256-${b.digest.slice(7)}`;
    assert.deepEqual(await readFile(path.join(other, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)), b.digest);
  }
  const tags = await request(url, '/v2/team/llm/tags/list', { headers: ADMIN });
  assert.equal(tags.status, 200, tags.text());
  assert.deepEqual(tags.json().tags, ['1']);
  const del = await request(url, '/v2/team/llm/manifests/1', { method: 'DELETE', headers: ADMIN });
  assert.equal(del.status, 202, del.text());
  assert.equal((await request(url, '/v2/team/llm/manifests/1', { headers: ADMIN })).status, 404);
  return model.blobs.map((b) => `blobs/sha256-${b.digest.slice(7)}`);
}

test('serve on S3 (Ceph): push with the ollama client, pull back, list tags, delete; the data folder holds only scratch', { timeout: 180_000 }, async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const data = await tempDir('oreg-s3-serve-');
  const bucket = await newBucket(endpoint);
  const env = {
    OLLAMA_REGISTRY_S3_ENDPOINT: endpoint, OLLAMA_REGISTRY_S3_BUCKET: bucket, OLLAMA_REGISTRY_S3_PREFIX: 'models',
    AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey, OLLAMA_REGISTRY_ALLOW_DELETE: 'true',
  };
  // The CLI edits the records in the bucket; the server reads them from there.
  const key = makeOllamaKey();
  const added = await cli(['keys', 'add', key.publicKeyLine, '--namespace', 'team', '--data', data], { env });
  assert.equal(added.code, 0, added.stderr);
  const user = await cli(['users', 'add', 'admin', '--namespace', 'team', '--delete', '--data', data], { env, stdin: Buffer.from('admin password\n') });
  assert.equal(user.code, 0, user.stderr);
  const reg = await spawnRegistry(['--data', data], env);
  let blobs: string[];
  try {
    blobs = await roundTrip(reg.url, key);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${reg.output()}`, { cause: e });
  } finally {
    await reg.stop();
  }
  const local = await files(data);
  assert.ok(local.every((f) => f.startsWith(path.join('.ollama-registry', 'scratch'))), `only scratch files on disk: ${local.join(', ')}`);
  // The bucket has ollama's layout under the prefix: the blobs and the records; the deleted tag is gone.
  const store = new S3Driver({ endpoint, bucket, prefix: 'models', credentials: S3_CREDENTIALS });
  const keys: string[] = [];
  for await (const e of store.entries('')) keys.push(e.key);
  for (const b of blobs) assert.ok(keys.includes(b), `${b} in the bucket: ${keys.join(', ')}`);
  for (const k of ['.ollama-registry/keys.json', '.ollama-registry/users.json', '.ollama-registry/token-secret']) assert.ok(keys.includes(k), k);
  assert.ok(!keys.some((k) => k.startsWith('manifests/')), keys.join(', '));
});

test('serve on the in-memory driver (tests only): push, pull back, list tags, delete; verify and gc run on it', { timeout: 60_000 }, async () => {
  const data = await tempDir('oreg-memory-serve-');
  const driver = new MemoryDriver();
  const reg = await startTestRegistry({ data, driver, config: { allowDelete: true } });
  try {
    const key = makeOllamaKey();
    await allowKey(reg, key, 'team');
    await addUser(reg, 'admin', 'admin password', 'team', ['pull', 'push', 'delete']);
    const blobs = await roundTrip(reg.url, key);
    // verify hashes by streaming from the store (no local files), and quarantines by copy + delete.
    await driver.write(blobs[0]!, Buffer.from('not what its name says'));
    const v = await verifyStore(reg.app);
    assert.equal(v.blobs.checked, blobs.length);
    assert.deepEqual(v.corrupt.map((c) => `blobs/sha256-${c.digest.slice(7)}`), [blobs[0]]);
    assert.equal(await driver.stat(blobs[0]!), null);
    assert.equal((await driver.readAll(`.ollama-registry/quarantine/${blobs[0]!.slice(6)}`)).toString(), 'not what its name says');
    // The tag is gone: gc sweeps its blobs from one listing of the store.
    const g = await runGc(reg.app, { graceMs: 0 });
    assert.equal(g.removed.length, blobs.length - 1);
    for (const b of blobs) assert.equal(await driver.stat(b), null, b);
    const local = await files(data);
    assert.ok(local.every((f) => f.startsWith(path.join('.ollama-registry', 'scratch'))), `only scratch files on disk: ${local.join(', ')}`);
  } finally {
    await reg.close();
  }
});

test('import and export on S3 (Ceph) and in memory: a models folder goes in (hashed in scratch, putFile) and comes out byte for byte', { timeout: 120_000 }, async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  for (const driver of [new MemoryDriver(), await s3Driver(endpoint, { prefix: 'models' })]) {
    const data = await tempDir('oreg-transfer-');
    const app = await openApp({ ...defaults(), data }, createLogger({ level: 'silent', format: 'text', destination: process.stderr }), { driver });
    const src = await tempDir('oreg-models-');
    const made = await makeModel(src, { model: 'moved', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 2_000_001, seed: driver.description }] });
    const r = await importFolder(app, src);
    assert.deepEqual(r.manifests.added, ['registry.ollama.ai/library/moved:latest'], driver.description);
    assert.equal(r.blobs.linked + r.blobs.copied, made.blobs.length);
    assert.deepEqual(await files(data), [], 'the scratch area is left empty');
    const out = await tempDir('oreg-exported-');
    await exportToDir(app, await planExport(app, { all: true }), out);
    assert.deepEqual(await files(out), await files(src));
    for (const f of await files(src)) assert.deepEqual(await readFile(path.join(out, f)), await readFile(path.join(src, f)), f);
  }
});
