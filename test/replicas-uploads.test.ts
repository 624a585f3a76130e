// Push sessions across replicas on one Ceph bucket: a session's bytes live on the replica that
// opened it, and a part or the commit that reaches another replica is forwarded there (signed,
// streamed). Behind a load balancer that sends every request to the next replica, ollama's
// chunked push and OCI monolithic and chunked pushes complete, the sha256 is checked before the
// blob is visible, and a dead owner ends the session with BLOB_UPLOAD_UNKNOWN (the client starts
// again), never a corrupt blob. The internal hop refuses unsigned requests.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush } from './support/ollama-client.js';
import { startReplicas, type ReplicaSet } from './support/replicas.js';
import { tempDir } from './support/server.js';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A load balancer that sends each request to the next replica in turn (not sticky). */
async function roundRobin(urls: string[]): Promise<{ url: string; hits: number[]; close(): Promise<void> }> {
  let next = 0;
  const hits = urls.map(() => 0);
  const server = http.createServer((req, res) => {
    const i = next++ % urls.length;
    hits[i]!++;
    const out = http.request(new URL(req.url ?? '/', urls[i]), { method: req.method, headers: req.headers, agent: false }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, hits, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Where a session is continued: the path of an upload Location. */
const sessionPath = (location: string | string[] | undefined): string => new URL(String(location)).pathname;

const KEY = makeOllamaKey();
const PUSHER = { Authorization: `Basic ${Buffer.from('pusher:pusher password').toString('base64')}` };

/** Three replicas on a new bucket; KEY (ollama) and the user `pusher` (OCI, PUSHER) may push to `team`. */
async function replicas(t: Parameters<typeof startReplicas>[0]): Promise<ReplicaSet | null> {
  const set = await startReplicas(t, { n: 0, keys: [{ key: KEY, namespace: 'team' }] });
  if (!set) return null;
  t.after(() => set.stop());
  const user = await cli(['users', 'add', 'pusher', '--namespace', 'team', '--data', await tempDir('oreg-cli-')], { env: set.env, stdin: Buffer.from('pusher password\n') });
  assert.equal(user.code, 0, user.stderr);
  for (let i = 0; i < 3; i++) await set.add();
  return set;
}

test('replicas: ollama push through a round-robin balancer (parts alternate between replicas), pulled back byte for byte', { timeout: 180_000 }, async (t) => {
  const set = await replicas(t);
  if (!set) return;
  const lb = await roundRobin(set.list.slice(0, 2).map((r) => r.url));
  t.after(() => lb.close());
  const hostPort = new URL(lb.url).host;
  const clientDir = await tempDir('oreg-client-');
  const model = await makeModel(clientDir, {
    host: hostPort, namespace: 'team', model: 'llm', tag: '1',
    layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 3_500_001, seed: 'across replicas' }],
  });
  try {
    const pushed = await ollamaPush(`${hostPort}/team/llm:1`, { modelsDir: clientDir, key: KEY, partSize: 1_000_000 });
    assert.equal(pushed.uploaded.length, model.blobs.length);
    const patches = pushed.requests.filter((r) => r.method === 'PATCH');
    assert.ok(patches.length >= 4, `the big blob went in parts: ${patches.length}`);
    assert.ok(patches.every((r) => r.status === 202), patches.map((r) => r.status).join(','));
    // Pulled from the third replica, which took no part in the push.
    const other = await tempDir('oreg-pullback-');
    const third = set.list[2]!;
    await ollamaPull(`${hostPort}/team/llm:1`, { modelsDir: other, connectTo: { [hostPort]: third.hostPort } });
    for (const b of model.blobs) {
      const name = `sha256-${b.digest.slice(7)}`;
      assert.deepEqual(await readFile(path.join(other, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)), b.digest);
    }
  } catch (e) {
    const reqs = ((e as { requests?: Array<{ method: string; url: string; status: number }> }).requests ?? []).map((r) => `${r.method} ${r.url} ${r.status}`);
    throw new Error(`${(e as Error).message}\n${reqs.join("\n")}\n${set.output().slice(-3000)}`, { cause: e });
  }
  assert.ok(lb.hits[0]! > 2 && lb.hits[1]! > 2, `both replicas took requests: ${lb.hits.join(', ')}`);
});

test('replicas: OCI monolithic and chunked pushes opened on one replica complete on another; a wrong digest publishes nothing', { timeout: 120_000 }, async (t) => {
  const set = await replicas(t);
  if (!set) return;
  const [a, b, c] = set.list as [typeof set.list[0], typeof set.list[0], typeof set.list[0]];
  const base = '/v2/team/oci/blobs/uploads/';
  const open = async (url: string): Promise<string> => {
    const r = await request(url, base, { method: 'POST', headers: PUSHER });
    assert.equal(r.status, 202, r.text());
    return sessionPath(r.headers.location);
  };
  const octets = { 'Content-Type': 'application/octet-stream', ...PUSHER };

  // Monolithic: POST on a, the whole body with the commit on b.
  const mono = randomBytes(2_000_000);
  let at = await open(a.url);
  let r = await request(b.url, `${at}?digest=${digestOf(mono)}`, { method: 'PUT', body: mono, headers: octets });
  assert.equal(r.status, 201, r.text());
  assert.equal(r.headers['docker-content-digest'], digestOf(mono));
  assert.equal(new URL(String(r.headers.location)).host, b.hostPort, 'the Location names the replica the client asked');
  assert.deepEqual(await set.store().readAll(`blobs/sha256-${digestOf(mono).slice(7)}`), mono);

  // Chunked: POST on a, PATCH on b, PATCH on a, GET status on c, PUT (no body) on c.
  const chunks = [randomBytes(700_000), randomBytes(900_001)];
  const whole = Buffer.concat(chunks);
  at = await open(a.url);
  r = await request(b.url, at, { method: 'PATCH', body: chunks[0], headers: octets });
  assert.equal(r.status, 202, r.text());
  assert.equal(r.headers.range, '0-699999');
  at = sessionPath(r.headers.location);
  r = await request(a.url, at, { method: 'PATCH', body: chunks[1], headers: { ...octets, 'Content-Range': `700000-${whole.length - 1}` } });
  assert.equal(r.status, 202, r.text());
  r = await request(c.url, at, { headers: PUSHER });
  assert.equal(r.status, 204, r.text());
  assert.equal(r.headers.range, `0-${whole.length - 1}`);
  r = await request(c.url, `${at}?digest=${digestOf(whole)}`, { method: 'PUT', headers: PUSHER });
  assert.equal(r.status, 201, r.text());
  assert.deepEqual(await set.store().readAll(`blobs/sha256-${digestOf(whole).slice(7)}`), whole);
  // A commit retried on yet another replica after its answer was lost: the same 201.
  r = await request(b.url, `${at}?digest=${digestOf(whole)}`, { method: 'PUT', headers: PUSHER });
  assert.equal(r.status, 201, r.text());

  // A wrong digest, committed through b on a session a holds: 400, and nothing is published.
  const wrong = randomBytes(500_000);
  const claimed = digestOf(Buffer.from('something else'));
  at = await open(a.url);
  r = await request(b.url, at, { method: 'PATCH', body: wrong, headers: octets });
  assert.equal(r.status, 202, r.text());
  r = await request(b.url, `${at}?digest=${claimed}`, { method: 'PUT', headers: PUSHER });
  assert.equal(r.status, 400, r.text());
  assert.equal(r.json().errors[0].code, 'DIGEST_INVALID');
  assert.equal((await set.store().stat(`blobs/sha256-${claimed.slice(7)}`)), null);
  assert.equal((await request(c.url, at, { headers: PUSHER })).status, 404, 'the session is gone');
});

test('replicas: owner of a session killed -9: the next part elsewhere gets BLOB_UPLOAD_UNKNOWN, nothing published; the internal hop refuses unsigned requests', { timeout: 120_000 }, async (t) => {
  const set = await replicas(t);
  if (!set) return;
  const [a, b] = set.list as [typeof set.list[0], typeof set.list[0]];
  const part = randomBytes(600_000);
  let r = await request(a.url, '/v2/team/dead/blobs/uploads/', { method: 'POST', headers: PUSHER });
  assert.equal(r.status, 202, r.text());
  const at = sessionPath(r.headers.location);
  const id = at.split('/').pop()!;

  // Unsigned, or signed for another path: 401 from the internal endpoint, nothing appended.
  r = await request(a.url, `/_internal/uploads/team/dead/${id}`, { method: 'PATCH', body: part });
  assert.equal(r.status, 401, r.text());
  assert.equal(r.json().errors[0].code, 'UNAUTHORIZED');
  assert.equal((await request(a.url, at, { headers: PUSHER })).headers.range, '0-0');

  r = await request(b.url, at, { method: 'PATCH', body: part, headers: PUSHER });
  assert.equal(r.status, 202, r.text());
  await set.kill(0);
  const whole = Buffer.concat([part, part]);
  r = await request(b.url, at, { method: 'PATCH', body: part, headers: { 'Content-Range': '600000-1199999', ...PUSHER } });
  assert.equal(r.status, 404, r.text());
  const err = r.json().errors[0];
  assert.equal(err.code, 'BLOB_UPLOAD_UNKNOWN');
  assert.match(err.message, /held by the registry process at http:\/\/127\.0\.0\.1:\d+, which refuses connections; start the upload again/);
  assert.doesNotMatch(err.message, /\n/);
  r = await request(b.url, `${at}?digest=${digestOf(whole)}`, { method: 'PUT', headers: PUSHER });
  assert.equal(r.status, 404, r.text());
  assert.equal(await set.store().stat(`blobs/sha256-${digestOf(whole).slice(7)}`), null);
});
