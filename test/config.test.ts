import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { defaults, loadConfig } from '../src/config.js';
import { tempDir } from './support/server.js';

test('defaults < YAML file < environment < flags', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, 'data: /srv/a\nlisten: 127.0.0.1:9000\nhosts: [hf.co, registry.ollama.ai]\nlog:\n  level: debug\n');
  const fromFile = loadConfig({ file, env: {} });
  assert.equal(fromFile.data, '/srv/a');
  assert.deepEqual(fromFile.listen, { host: '127.0.0.1', port: 9000 });
  assert.deepEqual(fromFile.hosts, ['hf.co', 'registry.ollama.ai']);
  assert.equal(fromFile.log.level, 'debug');
  const env = { OLLAMA_REGISTRY_LISTEN: '[::1]:9001', OLLAMA_REGISTRY_DATA: '/srv/b' };
  const fromEnv = loadConfig({ file, env });
  assert.deepEqual(fromEnv.listen, { host: '::1', port: 9001 });
  assert.equal(fromEnv.data, '/srv/b');
  const fromFlags = loadConfig({ file, env, flags: { listen: '8081', data: undefined } });
  assert.deepEqual(fromFlags.listen, { host: '0.0.0.0', port: 8081 });
  assert.equal(fromFlags.data, '/srv/b');
  const none = loadConfig({ env: { HOME: '/home/u', XDG_DATA_HOME: '' } });
  assert.ok(none.data.endsWith(path.join('.local', 'share', 'ollama-registry')));
  assert.deepEqual(none.listen, { host: '0.0.0.0', port: 8080 });
});

test('errors name the setting and where it came from', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'bad.yaml');
  await writeFile(file, 'listen: nowhere\n');
  assert.throws(() => loadConfig({ file, env: {} }), /^ConfigError: config: listen: expected HOST:PORT or PORT, got "nowhere"/);
  await writeFile(file, 'lsiten: 1\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: lsiten: unknown setting \(in .*bad\.yaml\)/);
  await writeFile(file, 'a: [\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: .*bad\.yaml: not valid YAML: /);
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_LOG_LEVEL: 'loud' } }), /config: log\.level: expected .* \(in environment\)|log\.level: expected/);
  assert.throws(() => loadConfig({ env: {}, flags: { 'tls.cert': '/x.pem' } }), /config: tls: give both/);
  assert.throws(() => loadConfig({ env: {}, flags: { hosts: 'ok.host,bad/host' } }), /config: hosts: invalid host folder name "bad\/host"/);
  assert.throws(() => loadConfig({ env: {}, flags: { listen: '1.2.3.4:70000' } }), /listen: expected/);
});

test('limits: timeouts, caps and sign-in throttling from the file; bad values name the key', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'limits.yaml');
  await writeFile(file, 'limits:\n  headersTimeout: 500ms\n  bodyIdleTimeout: 2m\n  requestTimeout: 0\n  maxConnectionsPerAddress: 16\n  loginLockout: 90\n');
  const c = loadConfig({ file, env: {} });
  assert.equal(c.limits.headersTimeoutSeconds, 0.5);
  assert.equal(c.limits.bodyIdleTimeoutSeconds, 120);
  assert.equal(c.limits.requestTimeoutSeconds, 0);
  assert.equal(c.limits.maxConnectionsPerAddress, 16);
  assert.equal(c.limits.loginLockoutSeconds, 90);
  assert.equal(c.limits.maxConnections, 2000);
  await writeFile(file, 'limits:\n  bodyIdleTimeout: 0\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: limits\.bodyIdleTimeout: expected a duration/);
  await writeFile(file, 'limits:\n  maxConnections: 1.5\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: limits\.maxConnections: expected a whole number/);
  await writeFile(file, 'limits:\n  maxConections: 5\n');
  assert.throws(() => loadConfig({ file, env: {} }), /config: limits\.maxConections: unknown setting/);
});

test('the defaults the settings table gives are the documented ones, every field filled', () => {
  const d = defaults({ HOME: '/home/u', XDG_DATA_HOME: '/xdg' });
  assert.deepEqual(d, {
    data: '/xdg/ollama-registry',
    listen: { host: '0.0.0.0', port: 8080 },
    hosts: ['registry.ollama.ai'],
    log: { level: 'info', format: 'auto' },
    shutdownTimeoutSeconds: 30,
    upstreams: [],
    routes: [],
    offline: false,
    policy: [],
    storage: { maxSize: 0, gcIntervalSeconds: 0, gcGraceSeconds: 3600, cachedHosts: [], minFree: { bytes: 2 ** 30, percent: 5 }, leaseSeconds: 30 },
    uploads: { maxSessions: 1000, maxSessionsPerClient: 100, maxBytes: 0, maxBytesPerClient: 0 },
    pushHost: 'ollama-registry.local',
    allowDelete: false,
    uploadMaxAgeHours: 24,
    auth: { anonymousRead: true, tokenTtlSeconds: 900, blobUrlTtlSeconds: 86_400 },
    limits: {
      headersTimeoutSeconds: 20, requestTimeoutSeconds: 60, bodyIdleTimeoutSeconds: 30, keepAliveTimeoutSeconds: 65, maxConnections: 2000, maxConnectionsPerAddress: 200,
      passwordWorkers: 1, passwordQueue: 64, loginFailuresPerUser: 10, loginFailuresPerAddress: 30, loginLockoutSeconds: 60,
    },
  });
});
