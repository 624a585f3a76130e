// The built-in self-test model: `ollama pull ollama-registry-selftest` through the mirror, with
// no upstream reachable (--offline), as ollama's client does it: manifest, HEAD per blob, the
// probe GET whose Location names the part URL, ranged part GETs, and every digest checked.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MAIN, spawnRegistry, tempDir, type SpawnedRegistry } from './support/server.js';
import { goRequest, MIRRORED } from './support/mirror.js';

const run = promisify(execFile);
const NAME = '/v2/library/ollama-registry-selftest';
let reg: SpawnedRegistry;
let ca: Buffer;
let dir: string;
let port: number;

before(async () => {
  dir = path.join(await tempDir(), 'mirror');
  await run(process.execPath, [MAIN, 'ca', 'init', '--dir', dir], { timeout: 60_000 });
  ca = await readFile(path.join(dir, 'ca.pem'));
  const cfg = path.join(await tempDir(), 'config.yaml');
  await writeFile(cfg, `mirror:\n  dir: ${dir}\n  listen: 127.0.0.1:0\n`);
  reg = await spawnRegistry(['--config', cfg, '--offline']);
  port = Number(new URL(reg.url).port);
});

after(async () => {
  await reg?.stop();
});

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('offline, a Go-like client pulls ollama-registry-selftest through the proxy and every digest and size checks out', async () => {
  const ua = { 'User-Agent': 'ollama/0.33.0 (amd64 linux) Go/go1.26.0', Accept: 'application/vnd.docker.distribution.manifest.v2+json' };
  const mf = await goRequest(port, ca, 'GET', `${NAME}/manifests/latest`, { headers: ua });
  assert.equal(mf.status, 200, mf.body.toString());
  assert.equal(mf.headers['content-type'], 'application/vnd.docker.distribution.manifest.v2+json');
  assert.equal(mf.headers['docker-content-digest'], sha(mf.body));
  assert.equal(mf.headers['x-content-type-options'], 'nosniff');
  const m = JSON.parse(mf.body.toString()) as { schemaVersion: number; config: { digest: string; size: number }; layers: Array<{ mediaType: string; digest: string; size: number }> };
  assert.equal(m.schemaVersion, 2);
  assert.deepEqual(m.layers.map((l) => l.mediaType), ['application/vnd.ollama.image.model', 'application/vnd.ollama.image.license', 'application/vnd.ollama.image.params']);
  const total = [m.config, ...m.layers].reduce((n, l) => n + l.size, 0);
  assert.ok(total < 16 << 10, `a few KB, not ${total} bytes`);
  for (const layer of [...m.layers, m.config]) {
    const head = await goRequest(port, ca, 'HEAD', `${NAME}/blobs/${layer.digest}`);
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers['content-length']), layer.size);
    const probe = await goRequest(port, ca, 'GET', `${NAME}/blobs/${layer.digest}`);
    assert.equal(probe.status, 200);
    const loc = new URL(probe.headers.location!);
    assert.equal(loc.host, MIRRORED);
    const half = Math.floor(layer.size / 2);
    const a = await goRequest(port, ca, 'GET', loc.pathname, { headers: { Range: `bytes=0-${half - 1}` } });
    const b = await goRequest(port, ca, 'GET', loc.pathname, { headers: { Range: `bytes=${half}-${layer.size - 1}` } });
    assert.equal(a.status, 206);
    assert.equal(b.headers['content-range'], `bytes ${half}-${layer.size - 1}/${layer.size}`);
    assert.equal(sha(Buffer.concat([a.body, b.body])), layer.digest);
  }
  const config = JSON.parse((await goRequest(port, ca, 'GET', `${NAME}/blobs/${m.config.digest}`)).body.toString());
  assert.deepEqual(config.rootfs.diff_ids, m.layers.map((l) => l.digest));
});

test('DNS mode serves the self-test too; another tag or digest under its name is a clear 404', async () => {
  const dns = /"dnsMode":"https:\/\/127\.0\.0\.1:(\d+)"/.exec(reg.output());
  assert.ok(dns, reg.output());
  const mf = await run('curl', ['-sS', '--fail', '--max-time', '30', '--cacert', path.join(dir, 'ca.pem'), '--resolve', `${MIRRORED}:${dns[1]}:127.0.0.1`,
    `https://${MIRRORED}:${dns[1]}${NAME}/manifests/latest`]);
  assert.match(mf.stdout, /application\/vnd\.ollama\.image\.model/);
  const tag = await goRequest(port, ca, 'GET', `${NAME}/manifests/7b`);
  assert.equal(tag.status, 404);
  assert.match(JSON.parse(tag.body.toString()).errors[0].message, /has only the tag latest/);
  const blob = await goRequest(port, ca, 'GET', `${NAME}/blobs/sha256:${'0'.repeat(64)}`);
  assert.equal(blob.status, 404);
  assert.equal(JSON.parse(blob.body.toString()).errors[0].code, 'BLOB_UNKNOWN');
});
