// Redirect mode end to end (storage.s3.redirect): a stored blob's GET answers 307 to a presigned
// URL on Ceph (127.0.0.2) when ollama's clients would follow it there (a registry on 127.0.0.1
// over http: its clients use --insecure), and the emulated ollama client follows it and gets the
// bytes; HEAD is always answered by the registry. Where the rules refuse (a registry reached on
// the store's own hostname, which ollama's downloader probe follows and then fails on), the bytes
// are streamed. The expired URL is test/s3-redirect.test.ts's.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush } from './support/ollama-client.js';
import { allowKey } from './support/registry-auth.js';
import { s3Driver, s3Endpoint } from './support/s3.js';
import { startTestRegistry, tempDir } from './support/server.js';

test('redirect mode: blob GET → 307 to a presigned URL on 127.0.0.2 that the ollama client follows; HEAD answered here; refused → streamed', { timeout: 120_000 }, async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  assert.equal(new URL(endpoint).hostname, '127.0.0.2', 'the test Ceph listens on 127.0.0.2');
  const driver = await s3Driver(endpoint, { prefix: 'models', redirect: true });
  t.after(() => driver.destroy());
  const reg = await startTestRegistry({ driver });
  t.after(() => reg.close());
  const key = makeOllamaKey();
  await allowKey(reg, key, 'team');
  const clientDir = await tempDir('oreg-client-');
  const model = await makeModel(clientDir, {
    host: reg.hostPort, namespace: 'team', model: 'llm', tag: '1',
    layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 2_500_001, seed: 'redirected' }],
  });
  await ollamaPush(`${reg.hostPort}/team/llm:1`, { modelsDir: clientDir, key, partSize: 1_000_000 });
  const big = model.blobs.find((b) => b.size === 2_500_001)!;
  const blobPath = `/v2/team/llm/blobs/${big.digest}`;

  const head = await request(reg.url, blobPath, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '2500001');
  const get = await request(reg.url, blobPath);
  assert.equal(get.status, 307, get.text());
  assert.equal(get.headers['x-content-type-options'], 'nosniff');
  const to = new URL(String(get.headers.location));
  assert.equal(to.origin, endpoint);
  assert.ok(to.searchParams.has('X-Amz-Signature'), to.href);

  const other = await tempDir('oreg-pullback-');
  const pulled = await ollamaPull(`${reg.hostPort}/team/llm:1`, { modelsDir: other });
  const name = `sha256-${big.digest.slice(7)}`;
  assert.deepEqual(await readFile(path.join(other, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)));
  const fromStore = pulled.requests.filter((r) => r.url.startsWith(endpoint) && r.method === 'GET');
  assert.ok(fromStore.length > 0, `the client read from the store: ${pulled.requests.map((r) => `${r.method} ${r.url} ${r.status}`).join('\n')}`);
  assert.ok(fromStore.every((r) => r.status === 200 || r.status === 206), 'every read from the store succeeded');

  // The refusal case: a registry on the store's hostname (127.0.0.2): ollama's probe would follow
  // a 307 there and fail on the store's 200 without a Location, so the bytes are streamed instead.
  const reg1 = await startTestRegistry({ driver, data: reg.data, config: { listen: { host: '127.0.0.2', port: 0 } } });
  t.after(() => reg1.close());
  const streamed = await request(reg1.url, blobPath);
  assert.equal(streamed.status, 200);
  assert.equal(streamed.body.length, 2_500_001);
  const other1 = await tempDir('oreg-pullback-');
  const pulled1 = await ollamaPull(`${reg1.hostPort}/team/llm:1`, { modelsDir: other1 });
  assert.ok(!pulled1.requests.some((r) => r.url.startsWith(endpoint)), 'nothing read from the store directly');
  assert.deepEqual(await readFile(path.join(other1, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)));
});
