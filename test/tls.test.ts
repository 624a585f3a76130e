// HTTPS when given --tls-cert and --tls-key; the Location of a blob probe says https.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { makeModel } from './support/models.js';
import { spawnRegistry, tempDir } from './support/server.js';
import { makeLocalCert } from './support/tls.js';

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
