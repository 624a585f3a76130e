// HTTPS when given --tls-cert and --tls-key; the Location of a blob probe says https; the ollama
// client's push and pull over TLS (realm, token request, upload and blob Locations all https).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './support/cli.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush } from './support/ollama-client.js';
import { spawnRegistry, tempDir } from './support/server.js';
import { makeLocalCert, makeTestCA } from './support/tls.js';

test('serve --tls-cert/--tls-key serves HTTPS', async () => {
  const dir = await tempDir();
  const { cert, key } = await makeLocalCert(dir);
  const data = path.join(dir, 'data');
  const m = await makeModel(data, { model: 'tiny' });
  const reg = await spawnRegistry(['--data', data, '--tls-cert', cert, '--tls-key', key]);
  try {
    assert.match(reg.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = await readFile(cert);
    const res = await new Promise<{ status: number; location?: string }>((resolve, reject) => {
      https.get(`${reg.url}/v2/library/tiny/blobs/${m.blobs[0]!.digest}`, { ca, agent: false }, (r) => {
        r.resume();
        resolve({ status: r.statusCode!, location: r.headers.location });
      }).on('error', reject);
    });
    assert.equal(res.status, 200);
    assert.equal(res.location, `${reg.url}/v2/library/tiny/blobs/${m.blobs[0]!.digest}`);
  } finally {
    await reg.stop();
  }
});

test('ollama pushes and pulls over HTTPS with a test CA: https realm, token flow over TLS, https Locations', async () => {
  const dir = await tempDir();
  const { ca, cert, key } = await makeTestCA(dir);
  const data = path.join(dir, 'data');
  const alice = makeOllamaKey();
  assert.equal((await cli(['keys', 'add', alice.publicKeyLine, '--namespace', 'team', '--data', data])).code, 0);
  // Reads need the key too, so the pull also signs in (and its parts use signed URLs).
  const reg = await spawnRegistry(['--data', data, '--tls-cert', cert, '--tls-key', key], { OLLAMA_REGISTRY_ANONYMOUS_READ: 'false' });
  try {
    const port = new URL(reg.url).port;
    const host = `localhost:${port}`;
    const base = `https://${host}`;
    const client = { ca: await readFile(ca), insecure: false, key: alice, connectTo: { [host]: `127.0.0.1:${port}` } };
    const src = await tempDir('oreg-pushclient-');
    const m = await makeModel(src, { host, namespace: 'team', model: 'secure', tag: '1', layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: 2_500_000, seed: 'tls' },
      { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
    ] });
    const pushed = await ollamaPush(`${host}/team/secure:1`, { ...client, modelsDir: src, partSize: 1_000_000 });
    const pulled = await ollamaPull(`${host}/team/secure:1`, { ...client, modelsDir: await tempDir('oreg-pullclient-') });
    assert.deepEqual(pulled.manifestBytes, m.manifestBytes);
    for (const [what, requests] of [['push', pushed.requests], ['pull', pulled.requests]] as const) {
      const log = requests.map((r) => `${r.method} ${r.url} ${r.status}`).join('\n');
      assert.ok(requests.every((r) => r.url.startsWith(`${base}/`) && r.status > 0 && r.status < 500), `${what}:\n${log}`);
      const challenge = requests.find((r) => r.status === 401)?.resHeaders['www-authenticate'];
      assert.match(String(challenge), new RegExp(`^Bearer realm="${base}/v2/token"`), `${what}: ${challenge}`);
      assert.ok(requests.some((r) => r.url.startsWith(`${base}/v2/token?`) && r.status === 200), `${what}: the token request over TLS\n${log}`);
      for (const r of requests) if (r.resHeaders.location) assert.ok(String(r.resHeaders.location).startsWith(`${base}/`), `${what}: Location ${r.resHeaders.location}`);
    }
    assert.ok(pushed.requests.some((r) => r.method === 'POST' && r.status === 202 && String(r.resHeaders.location).startsWith(`${base}/v2/team/secure/blobs/uploads/`)));
    assert.ok(pulled.requests.some((r) => r.method === 'GET' && r.status === 200 && r.url.includes('/blobs/') && r.resHeaders.location));
  } finally {
    await reg.stop();
  }
});
