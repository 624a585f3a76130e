// Blob reads are tied to the repository a request names (issue 12, hole 1): a blob is served
// through a repository only when a manifest of it references the blob, or the requester put it
// there. Attacks through the real server on loopback: reading another repository's layers under
// a deny rule and under `anonymousRead: false`, mounting them, linking them into a manifest.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { defaults } from '../src/config.js';
import { parsePolicy } from '../src/auth/rules.js';
import { startCacheStack } from './support/cache.js';
import { eventually } from './support/eventually.js';
import { request, type RawResponse } from './support/http.js';
import { makeModel, type MadeModel } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const basic = (user: string, pw = 'pw') => ({ Authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` });
const ABSENT = `sha256:${'1'.repeat(64)}`;
const blobFile = (data: string, digest: string) => readFile(path.join(data, 'blobs', `sha256-${digest.slice(7)}`));
const privateOnly = { policy: parsePolicy([{ name: 'team-only', deny: 'pull', names: 'team/*' }]) };
const closedReads = { auth: { ...defaults().auth, anonymousRead: false } };

async function withModels(specs: Array<[string, string]>): Promise<{ data: string; models: MadeModel[] }> {
  const data = await tempDir();
  const models: MadeModel[] = [];
  for (const [namespace, model] of specs) models.push(await makeModel(data, { namespace, model }));
  return { data, models };
}

/** Blobs of `a` that `b` does not share (the test models share their small default layers). */
function only(a: MadeModel, b: MadeModel): string[] {
  const theirs = new Set(b.blobs.map((x) => x.digest));
  const out = a.blobs.map((x) => x.digest).filter((d) => !theirs.has(d));
  assert.ok(out.length > 0);
  return out;
}

/** The three ways ollama and OCI tools read a blob. */
const READS: Array<[string, Record<string, string>]> = [['GET', {}], ['HEAD', {}], ['GET', { Range: 'bytes=0-9' }]];

/** A blob that must not be readable: the very answer a digest the registry lacks gets. */
/**
 * Hidden answers exactly as absent: 404 to a requester with credentials; without any (where
 * someone could have pushed it), the 401 challenge that makes OCI clients sign in, again the same
 * for a blob that is not here.
 */
async function assertHidden(reg: TestRegistry, repo: string, digest: string, headers: Record<string, string> = {}): Promise<void> {
  const status = headers.Authorization || reg.app.auth.store.empty() ? 404 : 401;
  for (const [method, h] of READS) {
    const r = await request(reg.url, `/v2/${repo}/blobs/${digest}`, { method, headers: { ...headers, ...h } });
    assert.equal(r.status, status, `${method} ${JSON.stringify(h)} /v2/${repo}/blobs/${digest}: ${r.text().slice(0, 200)}`);
    if (method === 'HEAD') continue;
    const absent = await request(reg.url, `/v2/${repo}/blobs/${ABSENT}`, { headers });
    assert.deepEqual(r.json(), JSON.parse(absent.text().replace(ABSENT, digest)), 'the same answer as for a blob that is not here');
  }
}

async function assertReadable(reg: TestRegistry, repo: string, digest: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const bytes = await blobFile(reg.data, digest);
  const head = await request(reg.url, `/v2/${repo}/blobs/${digest}`, { method: 'HEAD', headers });
  assert.equal(head.status, 200, head.text());
  assert.equal(head.headers['content-length'], String(bytes.length));
  const ranged = await request(reg.url, `/v2/${repo}/blobs/${digest}`, { headers: { ...headers, Range: 'bytes=2-9' } });
  assert.equal(ranged.status, 206);
  assert.deepEqual(ranged.body, bytes.subarray(2, 10));
  const whole = await request(reg.url, `/v2/${repo}/blobs/${digest}`, { headers });
  assert.equal(whole.status, 200);
  assert.deepEqual(whole.body, bytes);
  assert.ok(whole.headers.location, 'ollama needs the Location on a 200');
  return whole;
}

test('deny rule: a denied repository\'s blobs are not readable through any other name (GET, HEAD, ranged), and look absent', async (t) => {
  const { data, models: [secret, open] } = await withModels([['team', 'secret'], ['library', 'open']]);
  const reg = await startTestRegistry({ data, config: privateOnly });
  t.after(reg.close);
  for (const d of only(secret!, open!)) {
    await assertHidden(reg, 'library/anything', d); // the attack from the issue: any name at all
    await assertHidden(reg, 'library/open', d); // a real repository that does not reference it
  }
  assert.equal((await request(reg.url, `/v2/team/secret/blobs/${secret!.blobs[0]!.digest}`)).status, 403, 'its own name is refused by the rule');
  for (const b of open!.blobs) await assertReadable(reg, 'library/open', b.digest);
  await assertReadable(reg, 'LIBRARY/Open', open!.blobs[0]!.digest); // names match case-insensitively
});

test('anonymousRead false: a user who may pull only in "other" cannot read "team" layers through other/…; signed part URLs stay tied too', async (t) => {
  const { data, models: [secret, mine] } = await withModels([['team', 'secret'], ['other', 'x']]);
  const reg = await startTestRegistry({ data, config: { ...closedReads, allowDelete: true } });
  t.after(reg.close);
  await addUser(reg, 'bob', 'pw', 'other', ['pull']);
  await addUser(reg, 'ops', 'pw', 'other', ['pull', 'push', 'delete']);
  const bob = basic('bob');
  for (const d of only(secret!, mine!)) {
    await assertHidden(reg, 'other/x', d, bob);
    await assertHidden(reg, 'other/nothing', d, bob);
  }
  const layer = mine!.blobs[0]!.digest;
  const whole = await assertReadable(reg, 'other/x', layer, bob);
  // ollama fetches its parts from the Location without credentials: signed, and only for this blob.
  const part = new URL(String(whole.headers.location));
  assert.match(part.search, /^\?sig=/);
  const r = await request(reg.url, `${part.pathname}${part.search}`, { headers: { Range: 'bytes=0-3' } });
  assert.equal(r.status, 206);
  // Once no manifest of other/x references the blob, its signed URL finds nothing either.
  assert.equal((await request(reg.url, '/v2/other/x/manifests/latest', { method: 'DELETE', headers: basic('ops') })).status, 202);
  const gone = await request(reg.url, `${part.pathname}${part.search}`, { headers: { Range: 'bytes=0-3' } });
  assert.equal(gone.status, 404);
  assert.equal(gone.json().errors[0].code, 'BLOB_UNKNOWN');
});

test('mount: POST ?mount&from answers 201 only for a blob the pusher may read; otherwise an upload that must bring the bytes', async (t) => {
  const { data, models: [secret, open] } = await withModels([['team', 'secret'], ['library', 'open']]);
  const reg = await startTestRegistry({ data, config: closedReads });
  t.after(reg.close);
  await addUser(reg, 'mallory', 'pw', 'evil');
  await reg.app.auth.store.putUser({ ...reg.app.auth.store.user('mallory')!, name: 'alice', grants: [{ namespace: 'evil', actions: ['pull', 'push'] }, { namespace: 'team', actions: ['pull'] }] });
  const mallory = basic('mallory');
  const layer = secret!.blobs[0]!.digest;
  for (const query of [`?from=team%2Fsecret&mount=${encodeURIComponent(layer)}`, `?mount=${encodeURIComponent(layer)}`, `?digest=${encodeURIComponent(layer)}`]) {
    const r = await request(reg.url, `/v2/evil/x/blobs/uploads/${query}`, { method: 'POST', headers: mallory });
    assert.equal(r.status, 202, `${query}: ${r.text()}`);
    assert.match(String(r.headers.location), /\/v2\/evil\/x\/blobs\/uploads\/[0-9a-f-]{36}$/);
  }
  await assertHidden(reg, 'evil/x', layer, mallory);
  // Someone who may read it (pull in team) mounts it at once, and reads it there; mallory still cannot.
  const alice = basic('alice');
  const m = await request(reg.url, `/v2/evil/y/blobs/uploads/?from=team%2Fsecret&mount=${encodeURIComponent(layer)}`, { method: 'POST', headers: alice });
  assert.equal(m.status, 201);
  assert.equal(m.headers['docker-content-digest'], layer);
  await assertReadable(reg, 'evil/y', layer, alice);
  await assertHidden(reg, 'evil/y', layer, mallory);
  // With the bytes, mallory can push the blob like any other (verified), then read it where she put it.
  const bytes = await blobFile(data, layer);
  const put = await request(reg.url, `/v2/evil/x/blobs/uploads/?digest=${encodeURIComponent(layer)}`,
    { method: 'POST', headers: { ...mallory, 'Content-Type': 'application/octet-stream' }, body: bytes });
  assert.equal(put.status, 201);
  await assertReadable(reg, 'evil/x', layer, mallory);
  // Any pull in library (anonymous reads are off) does not help with team blobs either.
  assert.ok(open);
});

test('mount under a deny rule: 202, not 201, for a blob of a denied repository', async (t) => {
  const { data, models: [secret] } = await withModels([['team', 'secret']]);
  const reg = await startTestRegistry({ data, config: privateOnly });
  t.after(reg.close);
  await addUser(reg, 'mallory', 'pw', 'evil');
  const layer = secret!.blobs[0]!.digest;
  const r = await request(reg.url, `/v2/evil/x/blobs/uploads/?from=team%2Fsecret&mount=${encodeURIComponent(layer)}`, { method: 'POST', headers: basic('mallory') });
  assert.equal(r.status, 202, r.text());
  await assertHidden(reg, 'evil/x', layer, basic('mallory'));
});

test('manifest PUT: linking a private digest into one\'s own repository is MANIFEST_BLOB_UNKNOWN; blobs one may read or pushed are fine', async (t) => {
  const { data, models: [secret, open] } = await withModels([['team', 'secret'], ['library', 'open']]);
  const reg = await startTestRegistry({ data, config: privateOnly });
  t.after(reg.close);
  await addUser(reg, 'mallory', 'pw', 'evil');
  const mallory = { ...basic('mallory'), 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' };
  const linked = await request(reg.url, '/v2/evil/x/manifests/v1', { method: 'PUT', headers: mallory, body: secret!.manifestBytes });
  assert.equal(linked.status, 404, linked.text());
  const e = linked.json().errors[0];
  assert.equal(e.code, 'MANIFEST_BLOB_UNKNOWN');
  assert.doesNotMatch(linked.text(), /size|bytes/, 'nothing about the hidden blob (not even its size)');
  assert.equal((await request(reg.url, '/v2/evil/x/manifests/v1')).status, 404, 'nothing stored');
  await assertHidden(reg, 'evil/x', secret!.blobs[0]!.digest);
  // Blobs of a repository mallory may pull (anonymous reads are on for library): linked as they are.
  const retag = await request(reg.url, '/v2/evil/copy/manifests/v1', { method: 'PUT', headers: mallory, body: open!.manifestBytes });
  assert.equal(retag.status, 201, retag.text());
  await assertReadable(reg, 'evil/copy', open!.blobs[0]!.digest);
  // Pushing the bytes herself makes them hers to link; then anyone may read them through evil/x.
  for (const b of secret!.blobs) {
    const body = await blobFile(data, b.digest);
    const r = await request(reg.url, `/v2/evil/x/blobs/uploads/?digest=${encodeURIComponent(b.digest)}`, { method: 'POST', headers: basic('mallory'), body });
    assert.equal(r.status, 201, r.text());
  }
  assert.equal((await request(reg.url, '/v2/evil/x/manifests/v1', { method: 'PUT', headers: mallory, body: secret!.manifestBytes })).status, 201);
  await assertReadable(reg, 'evil/x', secret!.blobs[0]!.digest);
});

test('manifests written or removed by another process (pull, import, rm) change what is readable', async (t) => {
  const { data, models: [a] } = await withModels([['library', 'a']]);
  const reg = await startTestRegistry({ data });
  t.after(reg.close);
  await assertReadable(reg, 'library/a', a!.blobs[0]!.digest);
  // A model written into the folder behind the server's back: readable once its manifest is asked for…
  const b = await makeModel(data, { namespace: 'library', model: 'b', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 500, seed: 'b' }] });
  assert.equal((await request(reg.url, '/v2/library/b/manifests/latest')).status, 200);
  await assertReadable(reg, 'library/b', b.blobs[0]!.digest);
  // …or, without that, soon after.
  const c = await makeModel(data, { namespace: 'library', model: 'c', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 500, seed: 'c' }] });
  await eventually(async () => { await assertReadable(reg, 'library/c', c.blobs[0]!.digest); }, 10_000, 200);
  // A manifest removed behind the server's back: its blobs stop being readable through that name.
  await rm(c.manifestPath);
  await eventually(async () => { await assertHidden(reg, 'library/c', c.blobs[0]!.digest); }, 15_000, 200);
  await assertReadable(reg, 'library/a', a!.blobs[0]!.digest);
});

test('pull-through: a blob is fetched only through a repository whose manifest (cached, or just fetched, by tag or digest) references it', async (t) => {
  const s = await startCacheStack();
  t.after(s.close);
  const m = await makeModel(s.upstream.data, { namespace: 'library', model: 'up', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 4096, seed: 'up' }] });
  const layer = m.blobs[0]!.digest;
  s.front.reset();
  for (const [method, h] of READS) {
    const r = await request(s.cache.url, `/v2/library/other/blobs/${layer}`, { method, headers: h });
    assert.equal(r.status, 404, `${method} answered ${r.status}`);
  }
  assert.equal(s.front.requests.filter((q) => q.path.includes('/blobs/')).length, 0, 'nothing asked upstream for a blob no manifest here names');
  // By digest (not stored): its blobs are reachable through that repository.
  const byDigest = await request(s.cache.url, `/v2/library/up/manifests/${m.manifestDigest}`);
  assert.equal(byDigest.status, 200, byDigest.text());
  const r = await request(s.cache.url, `/v2/library/up/blobs/${layer}`, { headers: { Range: 'bytes=0-15' } });
  assert.equal(r.status, 206);
  assert.deepEqual(r.body, (await blobFile(s.upstream.data, layer)).subarray(0, 16));
  const still = await request(s.cache.url, `/v2/library/other/blobs/${layer}`, { method: 'HEAD' });
  assert.equal(still.status, 404, 'and through no other name');
});

test('a push interrupted by a restart: blobs committed before it stay the pusher\'s to read and to name in the manifest, nobody else\'s', async (t) => {
  const data = await tempDir();
  let reg = await startTestRegistry({ data });
  await addUser(reg, 'ci', 'pw', 'team');
  const bytes = Buffer.from('a layer pushed just before the restart');
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const open = await request(reg.url, '/v2/team/fresh/blobs/uploads/', { method: 'POST', headers: basic('ci') });
  assert.equal(open.status, 202);
  const session = new URL(String(open.headers.location)).pathname;
  const commit = await request(reg.url, `${session}?digest=${encodeURIComponent(digest)}`, { method: 'PUT', headers: basic('ci'), body: bytes });
  assert.equal(commit.status, 201, commit.text());
  await reg.close();
  reg = await startTestRegistry({ data });
  t.after(reg.close);
  await assertReadable(reg, 'team/fresh', digest, basic('ci'));
  await assertHidden(reg, 'team/fresh', digest); // anonymous readers: no manifest names it yet
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest, size: bytes.length },
    layers: [{ mediaType: 'application/vnd.ollama.image.model', digest, size: bytes.length }],
  });
  const put = await request(reg.url, '/v2/team/fresh/manifests/v1',
    { method: 'PUT', headers: { ...basic('ci'), 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' }, body: manifest });
  assert.equal(put.status, 201, put.text());
  await assertReadable(reg, 'team/fresh', digest);
});
