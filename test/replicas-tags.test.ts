// Tags written by several replicas at once on one bucket. Each tag is its own object (ollama's
// layout, manifests/<host>/<ns>/<model>/<tag>), written whole, so tags pushed at the same time
// through different replicas all stay (no shared list rewritten by a read-modify-write), and a tag
// pushed twice at once ends as one of the two manifests, whole. The blobs are pushed through one
// replica and the manifests through the others.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { startReplicas } from './support/replicas.js';
import { tempDir } from './support/server.js';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const PUSHER = { Authorization: `Basic ${Buffer.from('pusher:pusher password').toString('base64')}` };
const MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

test('replicas: tags pushed at once through two replicas are all listed on a third; one tag pushed twice at once is one of them, whole', { timeout: 120_000 }, async (t) => {
  const set = await startReplicas(t, { n: 0 });
  if (!set) return;
  t.after(() => set.stop());
  const user = await cli(['users', 'add', 'pusher', '--namespace', 'team', '--data', await tempDir('oreg-cli-')], { env: set.env, stdin: Buffer.from('pusher password\n') });
  assert.equal(user.code, 0, user.stderr);
  for (let i = 0; i < 3; i++) await set.add();
  const [a, b, c] = set.list as [typeof set.list[0], typeof set.list[0], typeof set.list[0]];

  // Blobs through a (a session each: POST, then PUT with the bytes).
  const blobs = [Buffer.from('{"model_format":"gguf"}'), randomBytes(100_000), randomBytes(100_001)];
  for (const blob of blobs) {
    const open = await request(a.url, '/v2/team/tags/blobs/uploads/', { method: 'POST', headers: PUSHER });
    assert.equal(open.status, 202, open.text());
    const put = await request(a.url, `${new URL(String(open.headers.location)).pathname}?digest=${digestOf(blob)}`, { method: 'PUT', body: blob, headers: PUSHER });
    assert.equal(put.status, 201, put.text());
  }
  const manifest = (layer: Buffer): Buffer => Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MANIFEST,
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: digestOf(blobs[0]!), size: blobs[0]!.length },
    layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: digestOf(layer), size: layer.length }],
  }));
  const one = manifest(blobs[1]!);
  const two = manifest(blobs[2]!);
  const put = (url: string, tag: string, body: Buffer) =>
    request(url, `/v2/team/tags/manifests/${tag}`, { method: 'PUT', body, headers: { ...PUSHER, 'Content-Type': MANIFEST } });

  // Twelve tags through b and c alternately, and `same` through both with different manifests, all at once.
  const tags = Array.from({ length: 12 }, (_, i) => `t${i}`);
  const answers = await Promise.all([
    ...tags.map((tag, i) => put(i % 2 === 0 ? b.url : c.url, tag, i % 2 === 0 ? one : two)),
    put(b.url, 'same', one), put(c.url, 'same', two),
  ]);
  for (const r of answers) assert.equal(r.status, 201, r.text());

  const list = await request(a.url, '/v2/team/tags/tags/list', { headers: PUSHER });
  assert.equal(list.status, 200, list.text());
  assert.deepEqual([...list.json().tags].sort(), [...tags, 'same'].sort());
  for (const [i, tag] of tags.entries()) {
    const got = await request(a.url, `/v2/team/tags/manifests/${tag}`, { headers: { ...PUSHER, Accept: MANIFEST } });
    assert.deepEqual(got.body, i % 2 === 0 ? one : two, tag);
  }
  const same = (await request(a.url, '/v2/team/tags/manifests/same', { headers: { ...PUSHER, Accept: MANIFEST } })).body;
  assert.ok(same.equals(one) || same.equals(two), `one of the two manifests, whole: ${same.toString().slice(0, 200)}`);
});
