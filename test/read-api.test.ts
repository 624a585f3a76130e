// The read side of the registry API, through real HTTP on loopback.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let gemma: Awaited<ReturnType<typeof makeModel>>;
let hfModel: Awaited<ReturnType<typeof makeModel>>;

before(async () => {
  reg = await startTestRegistry();
  gemma = await makeModel(reg.data, { model: 'gemma2', tag: '2b', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 300_000 }] });
  await makeModel(reg.data, { model: 'gemma2', tag: 'latest' });
  // Same name in another host folder: registry.ollama.ai must win by the lookup rule.
  await makeModel(reg.data, { host: 'other.example', model: 'gemma2', tag: '2b', layers: [{ mediaType: 'application/vnd.ollama.image.model', content: 'other' }] });
  hfModel = await makeModel(reg.data, { host: 'hf.co', namespace: 'bartowski', model: 'Llama-3.2-1B-GGUF', tag: 'Q4_K_M' });
  await makeModel(reg.data, { namespace: 'team', model: 'MixedCase', tag: 'V1' });
});
after(() => reg.close());

test('manifest GET returns the stored bytes verbatim with digest and media type', async () => {
  for (const accept of ['application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.manifest.v1+json', '*/*', '']) {
    const r = await request(reg.url, '/v2/library/gemma2/manifests/2b', { headers: accept ? { Accept: accept } : {} });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, gemma.manifestBytes);
    assert.equal(r.headers['docker-content-digest'], gemma.manifestDigest);
    assert.equal(r.headers['content-type'], 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(r.headers['content-length'], String(gemma.manifestBytes.length));
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  }
  const head = await request(reg.url, '/v2/library/gemma2/manifests/2b', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal(head.headers['content-length'], String(gemma.manifestBytes.length));
});

test('manifest by digest, and 404 for unknown names, tags and digests', async () => {
  const r = await request(reg.url, `/v2/library/gemma2/manifests/${gemma.manifestDigest}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, gemma.manifestBytes);
  for (const p of ['/v2/library/gemma2/manifests/nope', '/v2/library/nope/manifests/latest', `/v2/library/gemma2/manifests/sha256:${'1'.repeat(64)}`]) {
    const miss = await request(reg.url, p);
    assert.equal(miss.status, 404, p);
    assert.equal(miss.json().errors[0].code, 'MANIFEST_UNKNOWN');
    assert.doesNotMatch(miss.text(), /\n/);
  }
});

test('lookups are case-insensitive and keep the stored spelling', async () => {
  const r = await request(reg.url, '/v2/TEAM/mixedcase/manifests/v1');
  assert.equal(r.status, 200);
  const tags = await request(reg.url, '/v2/team/MIXEDCASE/tags/list');
  assert.deepEqual(tags.json().tags, ['V1']);
});

test('models of other host folders are reachable by namespace/model', async () => {
  const r = await request(reg.url, '/v2/bartowski/Llama-3.2-1B-GGUF/manifests/Q4_K_M');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, hfModel.manifestBytes);
  const cat = await request(reg.url, '/v2/_catalog');
  assert.deepEqual(cat.json().repositories, ['bartowski/Llama-3.2-1B-GGUF', 'library/gemma2', 'team/MixedCase']);
});

test('blob HEAD answers the exact size directly; GET without Range answers 200 with Location', async () => {
  const layer = gemma.blobs.find((b) => b.size === 300_000)!;
  const path = `/v2/library/gemma2/blobs/${layer.digest}`;
  const head = await request(reg.url, path, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '300000');
  assert.equal(head.headers.location, undefined);
  const get = await request(reg.url, path, { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(get.status, 200);
  assert.equal(get.headers.location, `${reg.url}${path}`);
  assert.equal(get.headers['content-encoding'], undefined);
  assert.equal(get.headers['accept-ranges'], 'bytes');
  assert.equal(get.headers['content-type'], 'application/octet-stream');
  assert.equal(`sha256:${createHash('sha256').update(get.body).digest('hex')}`, layer.digest);
  // The Location is built from the Host header the client used.
  const port = new URL(reg.url).port;
  for (const host of [`localhost:${port}`, `registry.lan.test:${port}`, `[::1]:${port}`]) {
    const viaName = await request(reg.url, path, { method: 'GET', headers: { Host: host } });
    assert.equal(viaName.status, 200);
    assert.equal(viaName.headers.location, `http://${host}${path}`);
  }
  // A Host that is not a plain host[:port] is not echoed: the address the client reached is used.
  const odd = await request(reg.url, path, { method: 'GET', headers: { Host: 'evil.example/x?' } });
  assert.equal(odd.headers.location, `${reg.url}${path}`);
});

test('ranged GETs answer 206 with exactly the bytes asked for; bad ranges 416', async () => {
  const layer = gemma.blobs.find((b) => b.size === 300_000)!;
  const path = `/v2/library/gemma2/blobs/${layer.digest}`;
  const whole = (await request(reg.url, path)).body;
  const cases: Array<[string, number, number]> = [['bytes=0-99', 0, 99], ['bytes=1000-', 1000, 299_999], ['bytes=-10', 299_990, 299_999], ['bytes=299999-400000', 299_999, 299_999]];
  for (const [h, s, e] of cases) {
    const r = await request(reg.url, path, { headers: { Range: h } });
    assert.equal(r.status, 206, h);
    assert.equal(r.headers['content-range'], `bytes ${s}-${e}/300000`);
    assert.deepEqual(r.body, whole.subarray(s, e + 1));
  }
  for (const h of ['bytes=300000-', 'bytes=5-1', 'bytes=0-1,5-6', 'items=0-1', 'bytes=abc', 'bytes=-0', 'bytes=-']) {
    const r = await request(reg.url, path, { headers: { Range: h } });
    assert.equal(r.status, 416, h);
    assert.equal(r.json().errors[0].code, 'RANGE_INVALID');
    assert.equal(r.headers['content-range'], 'bytes */300000');
  }
});

test('unknown blobs 404 with BLOB_UNKNOWN; writes are refused with 405 until push exists', async () => {
  const r = await request(reg.url, `/v2/library/gemma2/blobs/sha256:${'2'.repeat(64)}`);
  assert.equal(r.status, 404);
  assert.equal(r.json().errors[0].code, 'BLOB_UNKNOWN');
  const head = await request(reg.url, `/v2/library/gemma2/blobs/sha256:${'2'.repeat(64)}`, { method: 'HEAD' });
  assert.equal(head.status, 404);
  const put = await request(reg.url, '/v2/library/gemma2/manifests/x', { method: 'PUT', body: '{}' });
  assert.ok(put.status === 405 || put.status === 401, `status ${put.status}`);
});

test('tags/list and _catalog page with n and last and a Link header', async () => {
  const p1 = await request(reg.url, '/v2/library/gemma2/tags/list?n=1');
  assert.deepEqual(p1.json(), { name: 'library/gemma2', tags: ['2b'] });
  assert.equal(p1.headers.link, '</v2/library/gemma2/tags/list?n=1&last=2b>; rel="next"');
  const p2 = await request(reg.url, '/v2/library/gemma2/tags/list?n=1&last=2b');
  assert.deepEqual(p2.json().tags, ['latest']);
  assert.equal(p2.headers.link, undefined);
  const c = await request(reg.url, '/v2/_catalog?n=2');
  assert.deepEqual(c.json().repositories, ['bartowski/Llama-3.2-1B-GGUF', 'library/gemma2']);
  assert.match(String(c.headers.link), /last=library%2Fgemma2/);
  const bad = await request(reg.url, '/v2/_catalog?n=-1');
  assert.equal(bad.status, 400);
  assert.equal(bad.json().errors[0].code, 'PAGINATION_NUMBER_INVALID');
  const unknown = await request(reg.url, '/v2/library/nope/tags/list');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json().errors[0].code, 'NAME_UNKNOWN');
});
