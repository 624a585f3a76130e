// Manifests through the cache: freshness, stale-if-error, clear errors naming the upstream,
// the 412 pass-through, local content, offline mode, and the configuration of upstreams.
import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { loadConfig } from '../src/config.js';
import { startCacheStack, upstreamConfig, type CacheStack } from './support/cache.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';

let s: CacheStack;

before(async () => {
  s = await startCacheStack({ upstream: { freshness: '1h' } });
});
after(() => s.close());

const manifests = () => s.front.requests.filter((q) => q.path.includes('/manifests/')).length;

test('a tag older than its freshness is re-checked upstream; a changed tag is refreshed', async () => {
  await makeModel(s.upstream.data, { model: 'fresh', tag: 'v1' });
  const first = await request(s.cache.url, '/v2/library/fresh/manifests/v1');
  assert.equal(first.headers['x-ollama-registry-cache'], 'miss');
  s.front.reset();
  assert.equal((await request(s.cache.url, '/v2/library/fresh/manifests/v1')).headers['x-ollama-registry-cache'], 'hit');
  assert.equal(manifests(), 0);
  // Age the cached copy past the freshness time: same bytes upstream → revalidated.
  const cached = path.join(s.cache.data, 'manifests', new URL(s.front.url).host, 'library', 'fresh', 'v1');
  const old = new Date(Date.now() - 2 * 3600_000);
  await utimes(cached, old, old);
  assert.equal((await request(s.cache.url, '/v2/library/fresh/manifests/v1')).headers['x-ollama-registry-cache'], 'revalidated');
  assert.equal(manifests(), 1);
  // The tag moves upstream: after the freshness time the new bytes are served and stored.
  const moved = await makeModel(s.upstream.data, { model: 'fresh', tag: 'v1', layers: [{ mediaType: 'application/vnd.ollama.image.model', content: 'v2' }] });
  await utimes(cached, old, old);
  const r = await request(s.cache.url, '/v2/library/fresh/manifests/v1');
  assert.equal(r.headers['x-ollama-registry-cache'], 'refreshed');
  assert.deepEqual(r.body, moved.manifestBytes);
});

test('upstream down: cached tags are served stale and say so; unknown names get an error naming the upstream', async () => {
  await makeModel(s.upstream.data, { model: 'stale', tag: 'v1' });
  assert.equal((await request(s.cache.url, '/v2/library/stale/manifests/v1')).status, 200);
  const cached = path.join(s.cache.data, 'manifests', new URL(s.front.url).host, 'library', 'stale', 'v1');
  const old = new Date(Date.now() - 2 * 3600_000);
  await utimes(cached, old, old);
  await s.front.down();
  try {
    const r = await request(s.cache.url, '/v2/library/stale/manifests/v1');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-ollama-registry-cache'], 'stale');
    const unknown = await request(s.cache.url, '/v2/library/neverseen/manifests/v1');
    assert.equal(unknown.status, 503);
    assert.equal(unknown.json().errors[0].code, 'UNAVAILABLE');
    assert.match(unknown.json().errors[0].message, new RegExp(`upstream up \\(${s.front.url}\\).*unreachable`));
    assert.doesNotMatch(unknown.text(), /\n/);
  } finally {
    await s.front.up();
  }
});

test('a name the upstream does not have: 404 naming the upstream', async () => {
  const r = await request(s.cache.url, '/v2/library/nosuchmodel/manifests/latest');
  assert.equal(r.status, 404);
  assert.equal(r.json().errors[0].code, 'MANIFEST_UNKNOWN');
  assert.match(r.json().errors[0].message, /library\/nosuchmodel:latest is neither here nor on upstream up/);
});

test("the upstream's 412 (model needs a newer ollama) reaches the client verbatim", async () => {
  const body = '\nThe model you are attempting to pull requires a newer version of Ollama.\n\nPlease download the latest version at:\n\n\thttps://ollama.com/download\n';
  s.front.fault = (q) => (q.path.includes('/gated/') ? { kind: 'status', status: 412, body } : undefined);
  try {
    const r = await request(s.cache.url, '/v2/library/gated/manifests/latest', { headers: { 'User-Agent': 'ollama/0.1.0 (amd64 linux) Go/go1.22' } });
    assert.equal(r.status, 412);
    assert.equal(r.text(), body);
  } finally {
    s.front.fault = undefined;
  }
});

test('an upstream answering something that is not a manifest is an upstream error, and nothing is stored', async () => {
  s.front.fault = (q) => (q.path.includes('/garbage/') ? { kind: 'status', status: 200, body: '<html>captive portal</html>' } : undefined);
  try {
    const r = await request(s.cache.url, '/v2/library/garbage/manifests/latest');
    assert.equal(r.status, 502);
    assert.match(r.json().errors[0].message, /not a manifest/);
    assert.equal((await request(s.cache.url, '/v2/library/garbage/manifests/latest')).status, 502);
  } finally {
    s.front.fault = undefined;
  }
});

test('content under a host folder that no upstream caches into (pushed, imported) is served without asking upstream', async () => {
  const m = await makeModel(s.cache.data, { host: 'registry.example.lan', namespace: 'team', model: 'private', tag: 'v1' });
  s.front.reset();
  const r = await request(s.cache.url, '/v2/team/private/manifests/v1');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, m.manifestBytes);
  assert.equal(r.headers['x-ollama-registry-cache'], 'local');
  assert.equal(s.front.requests.length, 0);
});

test('offline mode: cached content is served (marked stale), nothing else, and no upstream is contacted', async () => {
  const data = await tempDir();
  const cached = await makeModel(data, { host: new URL(s.front.url).host, model: 'offl', tag: 'v1' });
  const reg = await startTestRegistry({ data, config: { ...upstreamConfig(s.front.url), offline: true } });
  try {
    s.front.reset();
    const r = await request(reg.url, '/v2/library/offl/manifests/v1');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-ollama-registry-cache'], 'stale');
    const blob = await request(reg.url, `/v2/library/offl/blobs/${cached.blobs[0]!.digest}`);
    assert.equal(blob.status, 200);
    const miss = await request(reg.url, '/v2/library/other/manifests/v1');
    assert.equal(miss.status, 404);
    assert.match(miss.json().errors[0].message, /offline/);
    const missBlob = await request(reg.url, `/v2/library/other/blobs/sha256:${'a'.repeat(64)}`);
    assert.equal(missBlob.status, 404);
    assert.match(missBlob.json().errors[0].message, /offline/);
    assert.equal(s.front.requests.length, 0);
  } finally {
    await reg.close();
  }
});

test('configuration: upstreams, routes with fallbacks, --upstream, and errors that name the key', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'c.yaml');
  await writeFile(file, [
    'upstreams:',
    '  - name: office', '    url: http://10.0.0.5:8080', '    host: registry.ollama.ai', '    freshness: 10m',
    '  - name: ollama', '    url: https://registry.ollama.ai/', '    timeout: 45s', '    retries: 3',
    '  - name: hf', '    url: https://hf.co',
    'routes:',
    '  - { namespace: bartowski, upstreams: [hf] }',
    '  - { namespace: "*", upstreams: [office, ollama] }',
  ].join('\n'));
  const c = loadConfig({ file, env: {} });
  assert.deepEqual(c.upstreams.map((u) => [u.name, u.url, u.host, u.freshnessSeconds]), [
    ['office', 'http://10.0.0.5:8080', 'registry.ollama.ai', 600], ['ollama', 'https://registry.ollama.ai', 'registry.ollama.ai', 600], ['hf', 'https://hf.co', 'hf.co', 600],
  ]);
  assert.equal(c.upstreams[1]!.timeoutSeconds, 45);
  assert.equal(c.routes.length, 2);
  const one = loadConfig({ env: {}, flags: { upstream: 'http://127.0.0.1:9999' } });
  assert.deepEqual(one.routes, [{ namespace: '*', upstreams: ['127.0.0.1:9999'] }]);
  assert.equal(loadConfig({ env: { OLLAMA_REGISTRY_OFFLINE: 'true', OLLAMA_REGISTRY_UPSTREAM: 'https://registry.ollama.ai' } }).offline, true);
  await writeFile(file, 'upstreams:\n  - url: ftp://x\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: upstreams\[0\]: expected an http:\/\/ or https:\/\/ URL/);
  await writeFile(file, 'upstreams:\n  - url: http://x\n    freshnes: 1m\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: upstreams\[0\]\.freshnes: unknown setting/);
  await writeFile(file, 'upstreams:\n  - url: http://x\n    freshness: soon\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: upstreams\[0\]\.freshness: expected a duration/);
  await writeFile(file, 'upstreams:\n  - url: http://x\nroutes:\n  - { namespace: "*", upstreams: [nope] }\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: routes\[0\]\.upstreams\[0\]: no upstream is named "nope"/);
  assert.throws(() => loadConfig({ env: {}, flags: { offline: 'maybe' } }), /config: offline: expected true or false/);
  // The commented example in the repository is a valid configuration.
  const example = loadConfig({ file: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/config.yaml'), env: {} });
  assert.deepEqual(example.routes[1], { namespace: '*', upstreams: ['office', 'ollama'] });
});
