// Hostile input: every request gets a 4xx JSON error, and nothing outside the data folder is
// read or written.
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let outside: string;
let layerDigest: string;

async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) out.push(path.join(e.parentPath ?? (e as any).path, e.name));
  return out.sort();
}

before(async () => {
  outside = await tempDir('oreg-hostile-');
  // Files a traversal would reach, outside the data folder.
  await writeFile(path.join(outside, 'secret'), 'TOPSECRET');
  await mkdir(path.join(outside, 'blobs'), { recursive: true });
  await writeFile(path.join(outside, 'blobs', `sha256-${'e'.repeat(64)}`), 'TOPSECRET');
  reg = await startTestRegistry({ data: path.join(outside, 'data') });
  const m = await makeModel(reg.data, { model: 'gemma2', tag: '2b' });
  layerDigest = m.blobs[0]!.digest;
});
after(() => reg.close());

const TRAVERSALS = [
  '/v2/../../secret',
  '/v2/library/../../../secret/manifests/latest',
  '/v2/library/gemma2/manifests/../../../../../secret',
  '/v2/library/%2e%2e/manifests/latest',
  '/v2/%2e%2e/%2e%2e/manifests/secret',
  '/v2/library/gemma2/manifests/..%2F..%2F..%2F..%2F..%2Fsecret',
  '/v2/library/gemma2/manifests/%252e%252e%252f%252e%252e%252fsecret',
  '/v2/library/gemma2/manifests/..\\..\\..\\..\\secret',
  '/v2/library/gemma2/manifests/%5c..%5c..%5csecret',
  '/v2/library/gemma2/manifests/latest%00',
  '/v2/library%00/gemma2/manifests/latest',
  `/v2/library/gemma2/manifests/${'a'.repeat(81)}`,
  `/v2/${'n'.repeat(5000)}/gemma2/manifests/latest`,
  '/v2/library/gemma2/blobs/sha256:../../../secret',
  `/v2/library/gemma2/blobs/sha256:${'e'.repeat(64)}/../../../secret`,
  `/v2/library/gemma2/blobs/sha256-${'e'.repeat(64)}`,
  `/v2/library/gemma2/blobs/sha256:${'E'.repeat(64)}`,
  `/v2/library/gemma2/blobs/sha256:${'e'.repeat(63)}`,
  `/v2/library/gemma2/blobs/sha512:${'e'.repeat(128)}`,
  `/v2/library/gemma2/blobs/..%2F..%2F..%2Fblobs%2Fsha256-${'e'.repeat(64)}`,
  '/v2/library/..%2F..%2F..%2Fsecret/tags/list',
  '/v2/lib.rary/gemma2/manifests/latest',
  '/v2/library/gemma2/manifests/%ZZ',
  '/v2/library/gemma2/manifests/sha256:%2e%2e',
  '/v2/a/b/c/manifests/latest',
  '/v2/_catalog/../../secret',
  '/secret',
  '/../secret',
  '//etc/passwd',
];

test('path traversal in every segment gets a 4xx JSON error and reads nothing outside', async () => {
  const before = await tree(outside);
  for (const p of TRAVERSALS) {
    for (const method of ['GET', 'HEAD']) {
      const r = await request(reg.url, p, { method });
      assert.ok(r.status >= 400 && r.status < 500, `${method} ${p} → ${r.status}`);
      if (method === 'GET') {
        assert.doesNotMatch(r.text(), /TOPSECRET/, p);
        const err = r.json().errors[0];
        assert.ok(err.code && err.message, p);
        assert.doesNotMatch(err.message, /\n/);
      }
    }
  }
  // A write attempt to the same places: refused, nothing written anywhere.
  for (const p of TRAVERSALS) {
    const r = await request(reg.url, p, { method: 'PUT', body: 'x' });
    assert.ok(r.status >= 400 && r.status < 500, `PUT ${p} → ${r.status}`);
  }
  const afterTree = (await tree(outside)).filter((f) => !f.startsWith(path.join(outside, 'data')));
  assert.deepEqual(afterTree, before.filter((f) => !f.startsWith(path.join(outside, 'data'))));
});

test('unknown and odd methods get a JSON error', async () => {
  for (const method of ['OPTIONS', 'TRACE', 'PROPFIND', 'PATCH', 'DELETE', 'POST']) {
    const r = await request(reg.url, `/v2/library/gemma2/blobs/${layerDigest}`, { method });
    assert.ok(r.status === 405 || r.status === 400, `${method} → ${r.status}`);
    assert.ok(r.json().errors[0].code, method);
  }
  // A method Node's parser itself refuses, sent raw.
  const raw = await new Promise<string>((resolve, reject) => {
    const s = net.connect(Number(new URL(reg.url).port), '127.0.0.1', () => s.end('FOO\x01 /v2/ HTTP/1.1\r\nHost: x\r\n\r\n'));
    let buf = '';
    s.on('data', (d) => { buf += d.toString(); });
    s.on('end', () => resolve(buf));
    s.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400/);
  assert.match(raw, /"code":"BAD_REQUEST"/);
});

test('huge headers get 431 with a JSON body', async () => {
  const r = await request(reg.url, '/v2/', { headers: { 'X-Big': 'x'.repeat(64 * 1024) } });
  assert.equal(r.status, 431);
  assert.equal(r.json().errors[0].code, 'HEADERS_TOO_LARGE');
});
