// `verify`: every blob re-hashed, corrupt ones quarantined (and no longer served), every
// manifest checked; the exit code says whether all is well.
import assert from 'node:assert/strict';
import { access, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';

const MODEL = 'application/vnd.ollama.image.model';
const exists = (p: string) => access(p).then(() => true, () => false);

test('verify: all well → exit 0; a corrupt blob is quarantined and not served, a short one and a missing one are reported', async () => {
  const data = await tempDir();
  await makeModel(data, { model: 'good', layers: [{ mediaType: MODEL, size: 3_000_000, seed: 'good' }] });
  const bad = await makeModel(data, { model: 'bad', layers: [{ mediaType: MODEL, size: 200_000, seed: 'bad' }] });
  const short = await makeModel(data, { host: 'hf.co', namespace: 'u', model: 'short', tag: 'Q4', layers: [{ mediaType: MODEL, size: 10_000, seed: 's' }] });
  const ok = await cli(['verify', '--data', data]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /re-hashed 4 blob\(s\), 3\.2 MB\nall is well\n/);

  const badDigest = bad.blobs.find((x) => x.size === 200_000)!.digest;
  const badFile = path.join(data, 'blobs', `sha256-${badDigest.slice(7)}`);
  const bytes = await readFile(badFile);
  bytes[1234] ^= 1;
  await writeFile(badFile, bytes);
  // A blob cut short keeps its name but not its hash; a file that is not a blob is left alone.
  const shortDigest = short.blobs.find((x) => x.size === 10_000)!.digest;
  await truncate(path.join(data, 'blobs', `sha256-${shortDigest.slice(7)}`), 4000);
  await writeFile(path.join(data, 'blobs', `sha256-${'e'.repeat(64)}-partial`), 'ollama download in progress');

  const r = await cli(['verify', '--data', data, '--jobs', '2']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, new RegExp(`corrupt: ${badDigest}: its bytes hash to sha256:[0-9a-f]{64}; moved to \\.ollama-registry/quarantine/sha256-${badDigest.slice(7)}`));
  assert.match(r.stdout, /broken: registry\.ollama\.ai\/library\/bad:latest: blob sha256:[0-9a-f]{64} is corrupt \(quarantined\)/);
  assert.match(r.stdout, /broken: hf\.co\/u\/short:Q4: blob sha256:[0-9a-f]{64} is corrupt/);
  assert.match(r.stdout, /note: blobs\/sha256-e{64}-partial is not a blob \(left alone\)/);
  assert.match(r.stdout, /2 corrupt blob\(s\), 2 broken model tag\(s\)/);
  assert.ok(!(await exists(badFile)));
  assert.ok(await exists(path.join(data, '.ollama-registry', 'quarantine', `sha256-${badDigest.slice(7)}`)));

  const reg = await startTestRegistry({ data });
  try {
    assert.equal((await request(reg.url, `/v2/library/bad/blobs/${badDigest}`, { method: 'HEAD' })).status, 404);
    assert.equal((await request(reg.url, '/v2/library/good/manifests/latest')).status, 200);
  } finally {
    await reg.close();
  }

  // Still broken (the blobs are gone) until the tags are removed; JSON says the same.
  const json = await cli(['verify', '--json', '--data', data]);
  assert.equal(json.code, 1);
  const rep = JSON.parse(json.stdout);
  assert.deepEqual(rep.broken.map((b: { name: string }) => b.name).sort(), ['hf.co/u/short:Q4', 'registry.ollama.ai/library/bad:latest']);
  assert.match(rep.broken[0].reason, /is missing/);
  await cli(['rm', 'bad', 'hf.co/u/short:Q4', '--data', data]);
  assert.equal((await cli(['verify', '--data', data])).code, 0);
});

test('verify reports a manifest whose blob size disagrees and one that is not JSON', async () => {
  const data = await tempDir();
  const m = await makeModel(data, { model: 'sized', layers: [{ mediaType: MODEL, size: 1000, seed: 'z' }] });
  const j = JSON.parse(m.manifestBytes.toString());
  j.layers[0].size = 999;
  await writeFile(m.manifestPath, JSON.stringify(j));
  await makeModel(data, { model: 'junk' });
  await writeFile(path.join(data, 'manifests/registry.ollama.ai/library/junk/latest'), 'not json');
  const r = await cli(['verify', '--data', data]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /broken: registry\.ollama\.ai\/library\/sized:latest: blob sha256:[0-9a-f]{64} is 1000 bytes, the manifest says 999/);
  assert.match(r.stdout, /broken: registry\.ollama\.ai\/library\/junk:latest: manifest is not valid JSON/);
});
