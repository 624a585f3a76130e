// A real CNCF distribution 2.8 (Debian's docker-registry) as the upstream: a model pushed to it
// with plain monolithic uploads is pulled through the cache by the emulated stock ollama client.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startDistribution, hasDistribution, pushToDistribution } from './support/distribution.js';
import { upstreamConfig } from './support/cache.js';
import { startFaultUpstream } from './support/fault-upstream.js';
import { makeModel } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { startTestRegistry, tempDir } from './support/server.js';
import { skipUnlessCI } from './support/ci.js';

test('pull through the cache from docker-registry (distribution 2.8)', { skip: skipUnlessCI(!hasDistribution() && 'docker-registry is not installed (apt-get install docker-registry)') }, async () => {
  const dist = await startDistribution();
  const front = await startFaultUpstream(dist.url);
  const src = await tempDir();
  const m = await makeModel(src, { model: 'distmodel', tag: 'v1', layers: [
    { mediaType: 'application/vnd.ollama.image.model', size: 5 << 20 },
    { mediaType: 'application/vnd.ollama.image.params', content: '{"temperature":0.1}' },
  ] });
  await pushToDistribution(dist.url, 'library/distmodel', 'v1', src, m.manifestBytes);
  const cache = await startTestRegistry({ config: upstreamConfig(front.url) });
  try {
    const modelsDir = await tempDir();
    const r = await ollamaPull(`${cache.hostPort}/library/distmodel:v1`, { modelsDir, partSize: 1 << 20 });
    assert.deepEqual(r.manifestBytes, m.manifestBytes);
    for (const b of m.blobs) {
      const got = await readFile(path.join(modelsDir, 'blobs', `sha256-${b.digest.slice(7)}`));
      assert.equal(`sha256:${createHash('sha256').update(got).digest('hex')}`, b.digest);
    }
    assert.equal(front.blobBytes(), m.blobs.reduce((n, b) => n + b.size, 0));
    // The cached copy lives under the upstream's host folder, as an ollama models folder would have it.
    const stored = path.join(cache.data, 'manifests', new URL(front.url).host, 'library', 'distmodel', 'v1');
    assert.deepEqual(await readFile(stored), m.manifestBytes);
  } finally {
    await cache.app.cache?.close();
    await cache.close();
    await front.close();
    await dist.close();
  }
});
