// `ollama-registry import DIR`: verified, linked or copied, bad files reported and left out.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { MAIN, startTestRegistry, tempDir } from './support/server.js';

const run = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const blobFile = (dir: string, digest: string) => path.join(dir, 'blobs', `sha256-${digest.slice(7)}`);

test('import brings good models in (hard links), reports bad blobs by name and leaves them out', async () => {
  const src = await tempDir('oreg-src-');
  const data = await tempDir('oreg-data-');
  const good = await makeModel(src, { model: 'good', tag: '1b', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 200_000, seed: 'g' }] });
  const corrupt = await makeModel(src, { model: 'corrupt', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 5000, seed: 'c' }] });
  const truncated = await makeModel(src, { model: 'truncated', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 5000, seed: 't' }] });
  const missing = await makeModel(src, { model: 'missing', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 5000, seed: 'm' }] });
  await makeModel(src, { host: 'hf.co', namespace: 'user', model: 'repo', tag: 'Q4_K_M' });
  // Damage: flip bytes, cut a file short, delete one.
  const cBlob = blobFile(src, corrupt.blobs.find((b) => b.size === 5000)!.digest);
  const bytes = await readFile(cBlob);
  bytes[10] ^= 0xff;
  await writeFile(cBlob, bytes);
  const tBlob = blobFile(src, truncated.blobs.find((b) => b.size === 5000)!.digest);
  await truncate(tBlob, 1000);
  await unlink(blobFile(src, missing.blobs.find((b) => b.size === 5000)!.digest));

  const r = await cli(['import', src, '--data', data]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`bad: blobs/sha256-${corrupt.blobs.find((b) => b.size === 5000)!.digest.slice(7)}: corrupt`));
  assert.match(r.stderr, /truncated: 1000 of 5000 bytes/);
  assert.match(r.stderr, /manifests\/registry\.ollama\.ai\/library\/missing\/latest: needs blob sha256:[0-9a-f]{64}, which is missing/);
  assert.match(r.stdout, /added {4}registry\.ollama\.ai\/library\/good:1b/);
  assert.match(r.stdout, /added {4}hf\.co\/user\/repo:Q4_K_M/);
  assert.match(r.stdout, /3 bad blob\(s\)|2 bad blob\(s\)/);

  // The good blobs are hard links (same filesystem): no extra space.
  const layer = good.blobs.find((b) => b.size === 200_000)!;
  assert.equal((await stat(blobFile(data, layer.digest))).ino, (await stat(blobFile(src, layer.digest))).ino);
  // Bad ones are not in the store, nor their manifests.
  await assert.rejects(stat(cBlob.replace(src, data)));
  await assert.rejects(stat(tBlob.replace(src, data)));
  await assert.rejects(stat(path.join(data, 'manifests/registry.ollama.ai/library/corrupt/latest')));

  // Served as imported.
  const reg = await startTestRegistry({ data });
  try {
    const m = await request(reg.url, '/v2/library/good/manifests/1b');
    assert.deepEqual(m.body, good.manifestBytes);
    const bad = await request(reg.url, '/v2/library/truncated/manifests/latest');
    assert.equal(bad.status, 404);
  } finally {
    await reg.close();
  }

  // Importing again skips everything that is there; fixing the source brings the rest in.
  await writeFile(cBlob, (bytes[10] ^= 0xff, bytes));
  const again = await cli(['import', src, '--data', data]);
  assert.match(again.stdout, /added {4}registry\.ollama\.ai\/library\/corrupt:latest/);
  assert.doesNotMatch(again.stdout, /library\/good/);
  assert.match(again.stdout, /already present/);
});

test('import refuses a folder that is not an ollama models folder, with exit code and message', async () => {
  const data = await tempDir('oreg-data-');
  const empty = await tempDir('oreg-empty-');
  const r = await cli(['import', empty, '--data', data]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^ollama-registry: .* is not an ollama models folder/);
  const usage = await cli(['import']);
  assert.equal(usage.code, 2);
});
