// Version gating: a model whose config says `requires` is refused (412, registry.ollama.ai's
// plain-text body) to older ollama clients only.
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { compareVersions, GATED_BODY, ollamaClientVersion, parseVersion } from '../src/registry/pull-through/gating.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';

const ua = (v: string) => `ollama/${v} (amd64 linux) Go/go1.24.1`;

test('a model that requires a newer ollama: 412 with the upstream body for older clients only', async (t) => {
  const data = await tempDir();
  await makeModel(data, { model: 'future', config: { requires: '0.99.1' } });
  await makeModel(data, { model: 'plain' });
  const reg = await startTestRegistry({ data });
  t.after(reg.close);
  const get = (name: string, userAgent?: string, method = 'GET') =>
    request(reg.url, `/v2/library/${name}/manifests/latest`, { method, headers: userAgent === undefined ? {} : { 'User-Agent': userAgent } });

  const old = await get('future', ua('0.12.3'));
  assert.equal(old.status, 412);
  assert.equal(old.text(), GATED_BODY);
  assert.equal(old.text(), '\nThe model you are attempting to pull requires a newer version of Ollama.\n\nPlease download the latest version at:\n\n\thttps://ollama.com/download\n');
  assert.match(String(old.headers['content-type']), /^text\/plain/);
  const head = await get('future', ua('0.12.3'), 'HEAD');
  assert.equal(head.status, 412);
  assert.equal(head.body.length, 0);
  assert.equal((await get('future', ua('0.99.1-rc2'))).status, 412, 'a release candidate is older than its release');
  assert.equal((await get('future', ua('0.99.0'))).status, 412);

  for (const v of ['0.99.1', '0.99.2', '0.100.0', '1.0.0']) assert.equal((await get('future', ua(v))).status, 200, `ollama ${v}`);
  assert.equal((await get('future', ua('0.0.0'))).status, 200, 'dev builds (0.0.0) are not gated');
  for (const other of [undefined, 'skopeo/1.9.3', 'Go-http-client/1.1', 'curl/7.88.1', 'ollama-something/0.1.0'])
    assert.equal((await get('future', other)).status, 200, `user agent ${other}`);
  assert.equal((await get('plain', ua('0.1.0'))).status, 200, 'no requires: no gating');
  assert.equal(await reg.app.metrics.versionGated.get().then((m) => m.values[0]!.value), 4);
});

test('requires is read once per config blob (cached by digest)', async (t) => {
  const data = await tempDir();
  const model = await makeModel(data, { model: 'cached', config: { requires: '5.0.0' } });
  const reg = await startTestRegistry({ data });
  t.after(reg.close);
  assert.equal((await request(reg.url, '/v2/library/cached/manifests/latest', { headers: { 'User-Agent': ua('0.5.0') } })).status, 412);
  // The config blob is gone now; the decision stands because it was cached.
  const config = model.blobs.find((b) => b.mediaType.includes('container.image'))!;
  await rm(path.join(data, 'blobs', `sha256-${config.digest.slice(7)}`));
  assert.equal((await request(reg.url, '/v2/library/cached/manifests/latest', { headers: { 'User-Agent': ua('0.5.0') } })).status, 412);
});

test('a config blob that is missing or not JSON gates nothing', async (t) => {
  const data = await tempDir();
  const model = await makeModel(data, { model: 'noconfig', config: { requires: '9.0.0', seed: 'unique-to-this-test' } });
  const config = model.blobs.find((b) => b.mediaType.includes('container.image'))!;
  await rm(path.join(data, 'blobs', `sha256-${config.digest.slice(7)}`));
  // A manifest whose config is a binary blob.
  const weights = model.blobs[0]!;
  const odd = {
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { ...weights, mediaType: 'application/vnd.docker.container.image.v1+json' }, layers: [weights],
  };
  await mkdir(path.join(data, 'manifests/registry.ollama.ai/library/binconfig'), { recursive: true });
  await writeFile(path.join(data, 'manifests/registry.ollama.ai/library/binconfig/latest'), JSON.stringify(odd));
  const reg = await startTestRegistry({ data });
  t.after(reg.close);
  for (const name of ['noconfig', 'binconfig'])
    assert.equal((await request(reg.url, `/v2/library/${name}/manifests/latest`, { headers: { 'User-Agent': ua('0.1.0') } })).status, 200, name);
});

test('version parsing and ordering', () => {
  const v = (s: string) => parseVersion(s)!;
  assert.deepEqual(v('0.32.12'), { nums: [0, 32, 12], pre: '' });
  assert.deepEqual(v('1.2'), { nums: [1, 2, 0], pre: '' });
  assert.equal(parseVersion('banana'), null);
  assert.ok(compareVersions(v('0.10.0'), v('0.9.9')) > 0, 'numeric, not string, order');
  assert.ok(compareVersions(v('0.5.0-rc1'), v('0.5.0')) < 0);
  assert.ok(compareVersions(v('0.5.0-rc2'), v('0.5.0-rc1')) > 0);
  assert.equal(compareVersions(v('1.0.0'), v('1.0.0+build')), 0);
  assert.deepEqual(ollamaClientVersion('ollama/0.12.3 (amd64 linux) Go/go1.24.1'), { nums: [0, 12, 3], pre: '' });
  assert.equal(ollamaClientVersion('Go-http-client/1.1'), null);
  assert.equal(ollamaClientVersion(undefined), null);
});
