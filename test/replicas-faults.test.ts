// The object store goes away under a running `serve` (a dedicated Ceph whose gateway is stopped):
// a manifest GET, a blob GET and a push answer 503 STORE_UNAVAILABLE with a one-line message and
// Retry-After, /readyz says not ready; when the gateway is back, everything committed before is
// intact (pulled back byte for byte) and a push completes.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './support/cli.js';
import { request, type RawResponse } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush } from './support/ollama-client.js';
import { newBucket, ownCeph, S3_CREDENTIALS } from './support/s3.js';
import { spawnRegistry, tempDir } from './support/server.js';

function outage(r: RawResponse, what: string): void {
  assert.equal(r.status, 503, `${what}: ${r.text()}`);
  assert.equal(r.headers['retry-after'], '5', what);
  assert.equal(r.headers['x-content-type-options'], 'nosniff', what);
  const err = r.json().errors[0];
  assert.equal(err.code, 'STORE_UNAVAILABLE', what);
  assert.match(err.message, /^the object store \(s3 bucket .*\) is unavailable: /, what);
  assert.doesNotMatch(err.message, /\n/, what);
}

test('serve on Ceph, gateway stopped: manifest GET, blob GET, push answer 503 STORE_UNAVAILABLE, /readyz not ready; back: all intact, a push completes', { timeout: 300_000 }, async (t) => {
  const ceph = await ownCeph(t);
  if (!ceph) return;
  const bucket = await newBucket(ceph.endpoint);
  const env = {
    OLLAMA_REGISTRY_S3_ENDPOINT: ceph.endpoint, OLLAMA_REGISTRY_S3_BUCKET: bucket, OLLAMA_REGISTRY_S3_PREFIX: 'models',
    AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
  };
  const key = makeOllamaKey();
  const data = await tempDir('oreg-faults-');
  const added = await cli(['keys', 'add', key.publicKeyLine, '--namespace', 'team', '--data', data], { env });
  assert.equal(added.code, 0, added.stderr);
  const reg = await spawnRegistry(['--data', data], env);
  t.after(() => reg.stop());
  const hostPort = reg.hostPort;
  const clientDir = await tempDir('oreg-client-');
  const model = await makeModel(clientDir, {
    host: hostPort, namespace: 'team', model: 'llm', tag: '1',
    layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 1_500_001, seed: 'before the outage' }],
  });
  try {
    await ollamaPush(`${hostPort}/team/llm:1`, { modelsDir: clientDir, key, partSize: 1_000_000 });
    const big = model.blobs.find((b) => b.size === 1_500_001)!;

    await ceph.stopGateway();
    outage(await request(reg.url, '/v2/team/llm/manifests/1'), 'manifest GET');
    outage(await request(reg.url, `/v2/team/llm/blobs/${big.digest}`), 'blob GET');
    const later = await tempDir('oreg-client-');
    await makeModel(later, { host: hostPort, namespace: 'team', model: 'llm', tag: '2', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 300_001, seed: 'after' }] });
    await assert.rejects(ollamaPush(`${hostPort}/team/llm:2`, { modelsDir: later, key }), (e: Error & { requests?: Array<{ status: number }> }) => {
      assert.ok(e.requests?.some((r) => r.status === 503), `the push met a 503: ${e.message}`);
      return true;
    });
    const ready = await request(reg.url, '/readyz');
    assert.equal(ready.status, 503, ready.text());
    assert.equal(ready.json().status, 'not ready');
    assert.match(ready.json().checks.storage, /unavailable/);

    await ceph.startGateway();
    assert.equal((await request(reg.url, '/readyz')).status, 200);
    const back = await tempDir('oreg-pullback-');
    await ollamaPull(`${hostPort}/team/llm:1`, { modelsDir: back });
    for (const b of model.blobs) {
      const name = `sha256-${b.digest.slice(7)}`;
      assert.deepEqual(await readFile(path.join(back, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)), b.digest);
    }
    await ollamaPush(`${hostPort}/team/llm:2`, { modelsDir: later, key });
    const tags = await request(reg.url, '/v2/team/llm/tags/list');
    assert.deepEqual(tags.json().tags, ['1', '2']);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${reg.output().slice(-4000)}`, { cause: e });
  }
});
