// Upload quotas through the real server: sessions per requester and in total (429), bytes per
// requester (507), open sessions counted under storage.maxSize (507), and the counts surviving a
// restart. A refused part leaves the session as it was, so the client can go on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaults, loadConfig, type Config } from '../src/config.js';
import { request, type RawResponse } from './support/http.js';
import { sha256Hex } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const basic = (user: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:pw`).toString('base64')}` });

async function registry(config: Partial<Config>, data?: string): Promise<TestRegistry> {
  const reg = await startTestRegistry({ data, config });
  for (const u of ['alice', 'bob']) await addUser(reg, u, 'pw', 'team');
  return reg;
}

const post = (reg: TestRegistry, user: string) => request(reg.url, '/v2/team/m/blobs/uploads/', { method: 'POST', headers: basic(user) });
const location = (r: RawResponse) => new URL(String(r.headers.location)).pathname;

function patch(reg: TestRegistry, user: string, loc: string, start: number, body: Buffer): Promise<RawResponse> {
  return request(reg.url, loc, { method: 'PATCH', headers: { ...basic(user), 'Content-Range': `${start}-${start + body.length - 1}`, 'Content-Length': body.length }, body });
}

function assertError(r: RawResponse, status: number, code: string, message: RegExp): void {
  assert.equal(r.status, status, r.text());
  assert.equal(r.headers['content-type'], 'application/json');
  const [e, ...rest] = r.json().errors;
  assert.equal(rest.length, 0);
  assert.equal(e.code, code);
  assert.match(e.message, message);
}

test('sessions per requester and in total: the one past the cap gets 429; closing one makes room', async () => {
  const reg = await registry({ uploads: { ...defaults().uploads, maxSessionsPerClient: 3, maxSessions: 5 } });
  try {
    const mine: RawResponse[] = [];
    for (let i = 0; i < 3; i++) mine.push(await post(reg, 'alice'));
    for (const r of mine) assert.equal(r.status, 202, r.text());
    assertError(await post(reg, 'alice'), 429, 'TOOMANYREQUESTS',
      /^user alice has 3 upload sessions open, the most uploads\.maxSessionsPerClient allows; finish or cancel one \(DELETE\), or wait for it to expire$/);
    // Another requester has its own count, up to the total.
    assert.equal((await post(reg, 'bob')).status, 202);
    assert.equal((await post(reg, 'bob')).status, 202);
    assertError(await post(reg, 'bob'), 429, 'TOOMANYREQUESTS', /^the registry has 5 upload sessions open, the most uploads\.maxSessions allows; try again later$/);
    // A cancelled and a committed session no longer count.
    assert.equal((await request(reg.url, location(mine[0]!), { method: 'DELETE', headers: basic('alice') })).status, 204);
    const blob = Buffer.from('layer');
    const put = await request(reg.url, `${location(mine[1]!)}?digest=sha256:${sha256Hex(blob)}`, { method: 'PUT', headers: { ...basic('alice'), 'Content-Length': blob.length }, body: blob });
    assert.equal(put.status, 201);
    assert.equal((await post(reg, 'alice')).status, 202);
    assert.equal((await post(reg, 'alice')).status, 202);
    assert.equal((await post(reg, 'alice')).status, 429);
  } finally {
    await reg.close();
  }
});

test('sessions left by a previous run count after a restart', async () => {
  const data = await tempDir();
  const config = { uploads: { ...defaults().uploads, maxSessionsPerClient: 2 } };
  const first = await registry(config, data);
  assert.equal((await post(first, 'alice')).status, 202);
  assert.equal((await post(first, 'alice')).status, 202);
  await first.close();
  const again = await registry(config, data);
  try {
    assert.equal((await post(again, 'alice')).status, 429);
  } finally {
    await again.close();
  }
});

test('bytes per requester: a part past uploads.maxBytesPerClient gets 507 and the session stays as it was', async () => {
  const reg = await registry({ uploads: { ...defaults().uploads, maxBytesPerClient: 1000 } });
  try {
    const a = location(await post(reg, 'alice'));
    const b = location(await post(reg, 'alice'));
    assert.equal((await patch(reg, 'alice', a, 0, Buffer.alloc(600, 1))).status, 202);
    assertError(await patch(reg, 'alice', b, 0, Buffer.alloc(600, 2)), 507, 'INSUFFICIENT_STORAGE',
      /^user alice holds 600 B in open upload sessions; this part would pass uploads\.maxBytesPerClient \(1 KB\): commit or cancel other uploads first$/);
    assert.equal((await request(reg.url, b, { headers: basic('alice') })).headers.range, '0-0', 'the refused part left nothing');
    // Bob is counted apart; once alice's first upload is committed, her part fits.
    assert.equal((await patch(reg, 'bob', location(await post(reg, 'bob')), 0, Buffer.alloc(900, 3))).status, 202);
    const done = await request(reg.url, `${a}?digest=sha256:${sha256Hex(Buffer.alloc(600, 1))}`, { method: 'PUT', headers: basic('alice') });
    assert.equal(done.status, 201, done.text());
    assert.equal((await patch(reg, 'alice', b, 0, Buffer.alloc(600, 2))).status, 202);
  } finally {
    await reg.close();
  }
});

test('open sessions count under storage.maxSize: a part that would pass it gets 507', async () => {
  const reg = await registry({ storage: { ...defaults().storage, maxSize: 2000 } });
  try {
    const blob = Buffer.alloc(1500, 7);
    const put = await request(reg.url, `/v2/team/m/blobs/uploads/?digest=sha256:${sha256Hex(blob)}`, { method: 'POST', headers: { ...basic('alice'), 'Content-Length': blob.length }, body: blob });
    assert.equal(put.status, 201, put.text());
    const a = location(await post(reg, 'alice'));
    assert.equal((await patch(reg, 'alice', a, 0, Buffer.alloc(300, 1))).status, 202);
    const b = location(await post(reg, 'bob'));
    assertError(await patch(reg, 'bob', b, 0, Buffer.alloc(300, 2)), 507, 'INSUFFICIENT_STORAGE',
      /^blobs \(1\.5 KB\) and open uploads \(300 B\) fill storage\.maxSize \(2 KB\); gc evicts cached models to make room$/);
    assert.equal((await patch(reg, 'bob', b, 0, Buffer.alloc(200, 2))).status, 202);
  } finally {
    await reg.close();
  }
});

test('the settings: sizes, a percentage for storage.minFree, and errors that name the setting', async () => {
  const env = { OLLAMA_REGISTRY_MIN_FREE: '10%', OLLAMA_REGISTRY_UPLOAD_MAX_SESSIONS_PER_CLIENT: '7', OLLAMA_REGISTRY_UPLOAD_MAX_BYTES: '100GB' };
  const c = loadConfig({ env });
  assert.deepEqual(c.storage.minFree, { percent: 10 });
  assert.deepEqual(c.uploads, { maxSessions: 1000, maxSessionsPerClient: 7, maxBytes: 100e9, maxBytesPerClient: 0 });
  assert.deepEqual(loadConfig({ env: { OLLAMA_REGISTRY_MIN_FREE: '2GiB' } }).storage.minFree, { bytes: 2 ** 31 });
  assert.deepEqual(defaults().storage.minFree, { bytes: 2 ** 30, percent: 5 });
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_MIN_FREE: 'lots' } }), /^ConfigError: config: storage\.minFree: expected a size such as 1GiB, a percentage of the disk such as 5%, or 0, got "lots" \(in environment\)$/);
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_MIN_FREE: '150%' } }), /storage\.minFree/);
  assert.throws(() => loadConfig({ env: { OLLAMA_REGISTRY_UPLOAD_MAX_SESSIONS: '-1' } }), /^ConfigError: config: uploads\.maxSessions: expected a whole number ≥ 0 \(0: no cap\), got "-1" \(in environment\)$/);
});
