// The upload protocol with raw requests (protocol §5, OCI distribution spec), and hostile input
// on every write path: the right error, a message without ollama's trigger words, nothing stored.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { request, type RawResponse } from './support/http.js';
import { sha256Hex } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let data: string;
const AUTH = { Authorization: `Basic ${Buffer.from('ci:correct horse').toString('base64')}` };
const digestOf = (b: Buffer | string) => `sha256:${sha256Hex(b)}`;

async function start(config = {}): Promise<void> {
  reg = await startTestRegistry({ data, config });
}

before(async () => {
  data = await tempDir('oreg-uploads-');
  await start();
  await addUser(reg, 'ci', 'correct horse', 'team');
});
after(() => reg.close());

function call(p: string, method: string, headers: Record<string, string | number> = {}, body?: Buffer | string): Promise<RawResponse> {
  return request(reg.url, p, { method, headers: { ...AUTH, ...headers }, body });
}

async function open(repo = 'team/m', query = ''): Promise<string> {
  const r = await call(`/v2/${repo}/blobs/uploads/${query}`, 'POST');
  assert.equal(r.status, 202, r.text());
  assert.match(String(r.headers['docker-upload-uuid']), /^[0-9a-f-]{36}$/);
  assert.equal(r.headers.range, '0-0');
  return new URL(String(r.headers.location)).pathname;
}

async function stored(): Promise<string[]> {
  const out: string[] = [];
  for (const dir of ['blobs', 'manifests']) {
    for (const e of await readdir(path.join(data, dir), { recursive: true, withFileTypes: true })) {
      if (e.isFile()) out.push(path.relative(data, path.join(e.parentPath ?? (e as any).path, e.name)));
    }
  }
  return out.sort();
}

function assertCleanError(r: RawResponse, status: number, code: string): void {
  assert.equal(r.status, status, r.text());
  const e = r.json().errors[0];
  assert.equal(e.code, code);
  assert.doesNotMatch(e.message, /unauthorized|access denied/i);
  assert.doesNotMatch(e.message, /\n/);
}

test('PATCH parts in order, a retried part truncates to its start, GET reports progress, PUT commits', async () => {
  const bytes = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz');
  const loc = await open();
  let r = await call(loc, 'PATCH', { 'Content-Range': '0-9' }, bytes.subarray(0, 10));
  assert.equal(r.status, 202);
  assert.equal(r.headers.range, '0-9');
  assert.match(String(r.headers.location), /^http:\/\/127\.0\.0\.1:\d+\/v2\/team\/m\/blobs\/uploads\/[0-9a-f-]{36}$/);
  r = await call(loc, 'PATCH', { 'Content-Range': '10-19' }, bytes.subarray(10, 20));
  assert.equal(r.headers.range, '0-19');
  // The same part again (ollama's retry after a lost response): accepted, not appended twice.
  r = await call(loc, 'PATCH', { 'Content-Range': '10-19' }, bytes.subarray(10, 20));
  assert.equal(r.status, 202);
  assert.equal(r.headers.range, '0-19');
  // An earlier start: truncated there.
  r = await call(loc, 'PATCH', { 'Content-Range': '5-14' }, bytes.subarray(5, 15));
  assert.equal(r.headers.range, '0-14');
  r = await call(loc, 'GET');
  assert.equal(r.status, 204);
  assert.equal(r.headers.range, '0-14');
  // A docker-style chunk without Content-Range appends.
  r = await call(loc, 'PATCH', {}, bytes.subarray(15));
  assert.equal(r.headers.range, `0-${bytes.length - 1}`);
  r = await call(`${loc}?digest=${encodeURIComponent(digestOf(bytes))}&etag=abc-3`, 'PUT', { 'Content-Length': 0 });
  assert.equal(r.status, 201);
  assert.equal(r.headers['docker-content-digest'], digestOf(bytes));
  assert.equal(r.headers.location, `${reg.url}/v2/team/m/blobs/${digestOf(bytes)}`);
  // Readable by its pusher through this repository before any manifest names it.
  const blob = await call(`/v2/team/m/blobs/${digestOf(bytes)}`, 'GET', { Range: 'bytes=0-' });
  assert.deepEqual(blob.body, bytes);
  // The commit retried after its answer was lost: still 201.
  r = await call(`${loc}?digest=${encodeURIComponent(digestOf(bytes))}`, 'PUT');
  assert.equal(r.status, 201);
});

test('the transfer client path: POST ?digest with X-Redirect-Uploads: 2, then PATCH and PUT; 201 at once when the blob exists', async () => {
  const bytes = Buffer.from('tensor bytes '.repeat(100));
  const d = digestOf(bytes);
  const loc = await open('team/t', `?digest=${encodeURIComponent(d)}`);
  let r = await call(loc, 'PATCH', { 'Content-Range': `0-${bytes.length - 1}`, 'X-Redirect-Uploads': '2' }, bytes);
  assert.equal(r.status, 202);
  r = await call(`${loc}?digest=${encodeURIComponent(d)}&etag=x-1`, 'PUT');
  assert.equal(r.status, 201);
  r = await call(`/v2/team/t/blobs/uploads/?digest=${encodeURIComponent(d)}`, 'POST', { 'X-Redirect-Uploads': '2', 'X-Content-Length': bytes.length });
  assert.equal(r.status, 201);
  assert.equal(r.headers['docker-content-digest'], d);
});

test('monolithic POST ?digest with a body stores the blob; a wrong digest stores nothing', async () => {
  const bytes = Buffer.from('monolithic');
  let r = await call(`/v2/team/m/blobs/uploads/?digest=${encodeURIComponent(digestOf(bytes))}`, 'POST', { 'Content-Type': 'application/octet-stream' }, bytes);
  assert.equal(r.status, 201);
  const before = await stored();
  r = await call(`/v2/team/m/blobs/uploads/?digest=${encodeURIComponent(digestOf('other'))}`, 'POST', {}, Buffer.from('not other'));
  assertCleanError(r, 400, 'DIGEST_INVALID');
  assert.deepEqual(await stored(), before);
});

test('hostile uploads: digest mismatch, bad Content-Range, parts past the end, unknown sessions, huge headers', async () => {
  const before = await stored();
  // Digest mismatch on commit: 400, and the session is gone.
  let loc = await open();
  await call(loc, 'PATCH', { 'Content-Range': '0-4' }, 'hello');
  let r = await call(`${loc}?digest=${encodeURIComponent(digestOf('HELLO'))}`, 'PUT');
  assertCleanError(r, 400, 'DIGEST_INVALID');
  assert.match(r.json().errors[0].message, /digest mismatch.*discarded/);
  assertCleanError(await call(loc, 'GET'), 404, 'BLOB_UPLOAD_UNKNOWN');
  // Commit without a digest, with a malformed one.
  loc = await open();
  assertCleanError(await call(loc, 'PUT'), 400, 'DIGEST_INVALID');
  assertCleanError(await call(`${loc}?digest=sha256:abc`, 'PUT'), 400, 'DIGEST_INVALID');
  // A part that starts past what the session has: 416 with the current Range.
  await call(loc, 'PATCH', { 'Content-Range': '0-2' }, 'abc');
  r = await call(loc, 'PATCH', { 'Content-Range': '10-12' }, 'xyz');
  assertCleanError(r, 416, 'RANGE_INVALID');
  assert.equal(r.headers.range, '0-2');
  assert.match(r.json().errors[0].message, /has 3 bytes so far/);
  // Malformed ranges; a range that disagrees with the body length.
  for (const cr of ['abc', '5-1', 'bytes=0-', '-1-2', '0-99999999999999999']) {
    assertCleanError(await call(loc, 'PATCH', { 'Content-Range': cr }, 'abc'), 416, 'RANGE_INVALID');
  }
  assertCleanError(await call(loc, 'PATCH', { 'Content-Range': '3-9' }, 'abc'), 416, 'RANGE_INVALID');
  r = await call(loc, 'GET');
  assert.equal(r.headers.range, '0-2', 'refused parts left nothing behind');
  // Unknown, malformed and other-repository session ids.
  assertCleanError(await call('/v2/team/m/blobs/uploads/00000000-0000-0000-0000-000000000000', 'PATCH', {}, 'x'), 404, 'BLOB_UPLOAD_UNKNOWN');
  assertCleanError(await call('/v2/team/m/blobs/uploads/..%2F..%2Fkeys.json', 'GET'), 404, 'BLOB_UPLOAD_UNKNOWN');
  assertCleanError(await call(loc.replace('/team/m/', '/team/other/'), 'GET'), 404, 'BLOB_UPLOAD_UNKNOWN');
  // Cancel.
  assert.equal((await call(loc, 'DELETE')).status, 204);
  assertCleanError(await call(loc, 'GET'), 404, 'BLOB_UPLOAD_UNKNOWN');
  // Huge headers: refused by the parser with a JSON 431.
  r = await call(await open(), 'PATCH', { 'Content-Range': '0-0', 'X-Big': 'x'.repeat(64 * 1024) }, 'a');
  assert.equal(r.status, 431);
  assert.deepEqual(await stored(), before);
});

test('hostile manifests: malformed JSON, missing blobs, wrong sizes, oversize, by digest, reserved tags; nothing stored', async () => {
  const cfg = Buffer.from('{"model_format":"gguf"}');
  await call(`/v2/team/m/blobs/uploads/?digest=${encodeURIComponent(digestOf(cfg))}`, 'POST', {}, cfg);
  const good = (over: Record<string, unknown> = {}) => JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: digestOf(cfg), size: cfg.length }, layers: [], ...over,
  });
  const before = await stored();
  const put = (tag: string, body: string | Buffer, headers = {}) =>
    call(`/v2/team/m/manifests/${tag}`, 'PUT', { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json', ...headers }, body);
  assertCleanError(await put('t', '{"schemaVersion":2,'), 400, 'MANIFEST_INVALID');
  assertCleanError(await put('t', '[]'), 400, 'MANIFEST_INVALID');
  assertCleanError(await put('t', good({ schemaVersion: 1 })), 400, 'MANIFEST_INVALID');
  assertCleanError(await put('t', good({ layers: [{ digest: 'sha256:nothex', size: 1 }] })), 400, 'MANIFEST_INVALID');
  const missing = digestOf('never pushed');
  const r = await put('t', good({ layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: missing, size: 12 }] }));
  assertCleanError(r, 404, 'MANIFEST_BLOB_UNKNOWN');
  assert.ok(r.json().errors[0].message.includes(missing));
  assertCleanError(await put('t', good({ config: { digest: digestOf(cfg), size: cfg.length + 1 } })), 400, 'MANIFEST_INVALID');
  assertCleanError(await put('t', Buffer.alloc(5 << 20, 0x20)), 413, 'TOO_LARGE');
  assertCleanError(await put(digestOf('x'), good()), 400, 'DIGEST_INVALID'); // by digest: the body must have it
  for (const tag of ['local', 'CLOUD', 'x-cloud']) assertCleanError(await put(tag, good()), 400, 'TAG_INVALID');
  assert.deepEqual(await stored(), before);
  // And the good one is stored verbatim, with its digest.
  const ok = await put('t', good());
  assert.equal(ok.status, 201);
  assert.equal(ok.headers['docker-content-digest'], digestOf(good()));
  assert.equal((await request(reg.url, '/v2/team/m/manifests/t')).text(), good());
});

test('deleting tags is refused unless allowDelete is on, and then needs the delete right', async () => {
  const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', layers: [] });
  assert.equal((await call('/v2/team/d/manifests/a', 'PUT', {}, body)).status, 201);
  assert.equal((await call('/v2/team/d/manifests/b', 'PUT', {}, body)).status, 201);
  let r = await call('/v2/team/d/manifests/a', 'DELETE');
  assertCleanError(r, 405, 'UNSUPPORTED'); // turned off: said before any right is checked
  await addUser(reg, 'admin', 'admin password', 'team', ['pull', 'push', 'delete']);
  const admin = { Authorization: `Basic ${Buffer.from('admin:admin password').toString('base64')}` };
  r = await request(reg.url, '/v2/team/d/manifests/a', { method: 'DELETE', headers: admin });
  assertCleanError(r, 405, 'UNSUPPORTED');
  assert.match(r.json().errors[0].message, /allowDelete/);
  await reg.close();
  await start({ allowDelete: true });
  assert.equal((await call('/v2/team/d/manifests/a', 'DELETE')).status, 403, 'ci has no delete right');
  r = await request(reg.url, '/v2/team/d/manifests/a', { method: 'DELETE', headers: admin });
  assert.equal(r.status, 202);
  assert.equal((await request(reg.url, '/v2/team/d/manifests/a')).status, 404);
  // By digest: every tag with that manifest goes.
  r = await request(reg.url, `/v2/team/d/manifests/${digestOf(body)}`, { method: 'DELETE', headers: admin });
  assert.equal(r.status, 202);
  assert.equal((await request(reg.url, '/v2/team/d/manifests/b')).status, 404);
  assertCleanError(await request(reg.url, '/v2/team/d/manifests/b', { method: 'DELETE', headers: admin }), 404, 'MANIFEST_UNKNOWN');
});

test('an upload session survives a restart (the hash is rebuilt from disk); stale sessions are purged', async () => {
  const bytes = Buffer.from('survives a restart, '.repeat(1000));
  const loc = await open();
  await call(loc, 'PATCH', { 'Content-Range': `0-9999` }, bytes.subarray(0, 10000));
  await reg.close();
  await start();
  assert.equal((await call(loc, 'GET')).headers.range, '0-9999');
  await call(loc, 'PATCH', { 'Content-Range': `10000-${bytes.length - 1}` }, bytes.subarray(10000));
  assert.equal((await call(`${loc}?digest=${encodeURIComponent(digestOf(bytes))}`, 'PUT')).status, 201);
  // A session left alone longer than uploadMaxAgeHours is gone after the next start.
  const stale = await open();
  await new Promise((r) => setTimeout(r, 300));
  await reg.close();
  await start({ uploadMaxAgeHours: 0.2 / 3600 });
  await new Promise((r) => setTimeout(r, 100));
  assertCleanError(await call(stale, 'GET'), 404, 'BLOB_UPLOAD_UNKNOWN');
  const uploads = await readdir(path.join(data, '.ollama-registry', 'uploads'));
  assert.equal(uploads.includes(stale.split('/').pop()!), false);
});

test('a retried part while the first attempt still hangs mid-body: the retry wins, the stalled one is cut', async () => {
  const bytes = Buffer.from('x'.repeat(100_000));
  const loc = await open();
  // The first attempt sends half its body, then stalls (a client that gave up on it).
  const port = Number(new URL(reg.url).port);
  const net = await import('node:net');
  const stalled = net.connect(port, '127.0.0.1');
  await new Promise((r) => stalled.once('connect', r));
  const closed = new Promise((r) => stalled.once('close', r));
  stalled.on('error', () => {});
  stalled.write(`PATCH ${loc} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: ${AUTH.Authorization}\r\n` +
    `Content-Range: 0-${bytes.length - 1}\r\nContent-Length: ${bytes.length}\r\n\r\n`);
  stalled.write(bytes.subarray(0, 50_000));
  await new Promise((r) => setTimeout(r, 200));
  const r = await call(loc, 'PATCH', { 'Content-Range': `0-${bytes.length - 1}` }, bytes);
  assert.equal(r.status, 202);
  assert.equal(r.headers.range, `0-${bytes.length - 1}`);
  stalled.destroy();
  await closed;
  assert.equal((await call(`${loc}?digest=${encodeURIComponent(digestOf(bytes))}`, 'PUT')).status, 201);
});
