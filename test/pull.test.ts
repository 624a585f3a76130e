// The stock ollama client's pull (emulated from protocol/ollama.md §2–3) against the registry:
// HEAD, the probe GET (200 + Location), up to 16 parallel ranged parts with ollama's part layout,
// sha256 check, manifest written in ollama's layout.
import assert from 'node:assert/strict';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ollamaPull } from './support/ollama-client.js';
import { makeModel, sha256File, sha256Hex } from './support/models.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let model: Awaited<ReturnType<typeof makeModel>>;
// 1_700_000_007 bytes would be too slow here; 3 of ollama's layouts at test-friendly sizes:
// 250 MB → 3 parts of 100 MB, the last 50 MB (clamped to the 100 MB minimum);
// 50 MB → 1 part; plus tiny blobs (a 17-byte params blob also gets HEAD, probe and one part).
const BIG = 250_000_003;

before(async () => {
  reg = await startTestRegistry();
  model = await makeModel(reg.data, {
    model: 'gemma2', tag: '2b',
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: BIG, seed: 'weights' },
      { mediaType: 'application/vnd.ollama.image.projector', size: 50_000_000, seed: 'proj' },
      { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
      { mediaType: 'application/vnd.ollama.image.params', content: '{"temperature":0.7}' },
    ],
  });
});
after(() => reg.close());

test('a stock-client pull gets every blob verified and the manifest in ollama layout', async () => {
  const modelsDir = await tempDir('oreg-client-');
  const res = await ollamaPull(`${reg.hostPort}/library/gemma2:2b`, { modelsDir });
  // Manifest bytes verbatim at ollama's path.
  const written = await readFile(path.join(modelsDir, 'manifests', reg.hostPort, 'library', 'gemma2', '2b'));
  assert.deepEqual(written, model.manifestBytes);
  for (const b of model.blobs) {
    assert.equal(await sha256File(path.join(modelsDir, 'blobs', `sha256-${b.digest.slice(7)}`)), b.digest);
  }
  // The request sequence per blob: HEAD, probe GET (200 + Location), ranged parts.
  const big = model.blobs.find((b) => b.size === BIG)!;
  const forBig = res.requests.filter((r) => r.url.endsWith(big.digest));
  assert.equal(forBig[0]!.method, 'HEAD');
  assert.equal(forBig[0]!.status, 200);
  assert.equal(forBig[1]!.method, 'GET');
  assert.equal(forBig[1]!.status, 200);
  assert.ok(forBig[1]!.resHeaders.location, 'probe answered with a Location');
  const parts = forBig.slice(2);
  assert.deepEqual(parts.map((p) => p.reqHeaders.range).sort(), ['bytes=0-99999999', 'bytes=100000000-199999999', 'bytes=200000000-250000002']);
  for (const p of parts) {
    assert.equal(p.status, 206);
    assert.equal(p.reqHeaders.authorization, undefined);
  }
  // Pulling again downloads nothing (ollama skips blobs it has).
  const again = await ollamaPull(`${reg.hostPort}/library/gemma2:2b`, { modelsDir });
  assert.equal(again.downloaded.length, 0);
});

test('a pull of an unknown model fails as ollama reports it', async () => {
  const modelsDir = await tempDir('oreg-client-');
  await assert.rejects(ollamaPull(`${reg.hostPort}/library/nope:1`, { modelsDir }), /pull model manifest: file does not exist/);
});

test('a 1.6 GB blob is pulled in 16 parts of 100 MB plus the 17th remainder part', async () => {
  // Total/16 inside the 100 MB…1 GB clamp and not a multiple of 16: 16 parts of 100_000_000
  // bytes and a 17th of 15 bytes. The blob is a sparse file of zeros (cheap to make).
  const total = 1_600_000_015;
  const blobs = `${reg.data}/blobs`;
  const tmp = `${blobs}/zeros.tmp`;
  const fh = await open(tmp, 'w');
  await fh.truncate(total);
  await fh.close();
  const digest = await sha256File(tmp);
  await rename(tmp, `${blobs}/sha256-${digest.slice(7)}`);
  const cfg = Buffer.from('{"model_format":"gguf","architecture":"amd64","os":"linux"}');
  await writeFile(`${blobs}/sha256-${sha256Hex(cfg)}`, cfg);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${sha256Hex(cfg)}`, size: cfg.length },
    layers: [{ mediaType: 'application/vnd.ollama.image.model', digest, size: total }],
  });
  await mkdir(`${reg.data}/manifests/registry.ollama.ai/library/zeros`, { recursive: true });
  await writeFile(`${reg.data}/manifests/registry.ollama.ai/library/zeros/big`, manifest);

  const modelsDir = await tempDir('oreg-client-');
  const res = await ollamaPull(`${reg.hostPort}/library/zeros:big`, { modelsDir });
  assert.equal(await sha256File(path.join(modelsDir, 'blobs', `sha256-${digest.slice(7)}`)), digest);
  const parts = res.requests.filter((r) => r.url.endsWith(digest) && r.reqHeaders.range);
  assert.equal(parts.length, 17);
  const ranges = parts.map((p) => p.reqHeaders.range!).sort((a, b) => Number(a.slice(6).split('-')[0]) - Number(b.slice(6).split('-')[0]));
  assert.equal(ranges[0], 'bytes=0-99999999');
  assert.equal(ranges[15], 'bytes=1500000000-1599999999');
  assert.equal(ranges[16], 'bytes=1600000000-1600000014');
  assert.ok(parts.every((p) => p.status === 206));
});
