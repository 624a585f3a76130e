// The storage settings: sizes and durations as people write them, errors that name the key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';
import { openDriver } from '../src/storage/open.js';
import { isCachedHost } from '../src/registry/housekeeping/sources.js';
import { parseDuration, parseSize } from '../src/units.js';

test('sizes and durations', () => {
  assert.equal(parseSize('500GB'), 500e9);
  assert.equal(parseSize('1.5TiB'), 1.5 * 2 ** 40);
  assert.equal(parseSize('150 kb'), 150_000);
  assert.equal(parseSize(1234), 1234);
  assert.equal(parseSize('12 parsecs'), null);
  assert.equal(parseSize('-1'), null);
  assert.equal(parseDuration('90m'), 5400);
  assert.equal(parseDuration('1d'), 86400);
  assert.equal(parseDuration('0.5'), 0.5);
  assert.equal(parseDuration('soon'), null);
});

test('storage.* from the environment and flags; errors name the key', () => {
  const d = loadConfig({ env: {} });
  assert.deepEqual(d.storage, { maxSize: 0, gcIntervalSeconds: 0, gcGraceSeconds: 3600, cachedHosts: [], minFree: { bytes: 2 ** 30, percent: 5 }, leaseSeconds: 30 });
  const c = loadConfig({ env: { OLLAMA_REGISTRY_MAX_SIZE: '2TB', OLLAMA_REGISTRY_GC_INTERVAL: '6h', OLLAMA_REGISTRY_CACHED_HOSTS: 'registry.ollama.ai, hf.co' }, flags: { 'storage.gcGrace': '10m' } });
  assert.deepEqual(c.storage, {
    maxSize: 2e12, gcIntervalSeconds: 21600, gcGraceSeconds: 600, cachedHosts: ['registry.ollama.ai', 'hf.co'], minFree: { bytes: 2 ** 30, percent: 5 }, leaseSeconds: 30,
  });
  const l = loadConfig({ env: { OLLAMA_REGISTRY_LEASE: '2', OLLAMA_REGISTRY_ADVERTISE_URL: 'http://replica-1.lan:8080/' } });
  assert.equal(l.storage.leaseSeconds, 2);
  assert.equal(l.storage.advertiseUrl, 'http://replica-1.lan:8080');
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_LEASE: '0' } }), /storage\.lease: expected a duration/);
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_ADVERTISE_URL: 'http://user:pw@replica-1.lan' } }), /storage\.advertiseUrl: expected an http\(s\) URL without credentials/);
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_ADVERTISE_URL: 'ftp://replica-1.lan' } }), /storage\.advertiseUrl/);
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_GC_INTERVAL: 'hourly' } }), (e: Error) => e instanceof ConfigError && /storage\.gcInterval: expected a duration/.test(e.message));
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_CACHED_HOSTS: 'bad/host' } }), /storage\.cachedHosts: invalid host folder name/);
});

test('cached (evictable) vs local host folders: upstream hosts and storage.cachedHosts, never the push host', () => {
  const c = loadConfig({ env: { OLLAMA_REGISTRY_CACHED_HOSTS: 'hf.co' } });
  assert.equal(isCachedHost(c, 'HF.co'), true);
  assert.equal(isCachedHost(c, 'registry.ollama.ai'), false);
  const withFeatures = { ...c, upstreams: [{ host: 'registry.ollama.ai' }], pushHost: 'hf.co' };
  assert.equal(isCachedHost(withFeatures, 'registry.ollama.ai'), true);
  assert.equal(isCachedHost(withFeatures, 'hf.co'), false);
});

test('storage.s3: from the environment or a file; a bucket is required; the S3 driver is chosen only then', async () => {
  const env = { OLLAMA_REGISTRY_S3_ENDPOINT: 'http://127.0.0.2:7480', OLLAMA_REGISTRY_S3_BUCKET: 'models', OLLAMA_REGISTRY_S3_PREFIX: 'site-a', OLLAMA_REGISTRY_S3_FORCE_PATH_STYLE: 'true' };
  const c = loadConfig({ env });
  const { endpoint, bucket, prefix, forcePathStyle } = c.storage.s3 ?? {};
  assert.deepEqual({ endpoint, bucket, prefix, forcePathStyle }, { endpoint: 'http://127.0.0.2:7480', bucket: 'models', prefix: 'site-a', forcePathStyle: true });
  assert.equal((await openDriver(c)).description, 's3 bucket models/site-a at http://127.0.0.2:7480');
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_S3_ENDPOINT: 'http://127.0.0.2:7480' } }), (e: unknown) => e instanceof ConfigError && /storage\.s3\.bucket/.test(e.message));
  assert.throws(() => loadConfig({ env: { ...env, OLLAMA_REGISTRY_S3_REDIRECT: 'maybe' } }), ConfigError);
  const plain = loadConfig({ env: {} });
  assert.equal(plain.storage.s3, undefined);
  assert.match((await openDriver(plain)).description, /^folder /);
});
