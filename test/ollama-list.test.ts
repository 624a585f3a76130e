// ollama's manifest lists (ollama PR #16590, unreleased; see test/support/ollama-list.ts):
// pushed and pulled as that client does, stored and served verbatim, pulled through the cache
// (children as blobs), kept whole by gc, carried by export/import and checked by verify.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { runGc } from '../src/registry/housekeeping/gc.js';
import { verifyStore } from '../src/registry/housekeeping/verify.js';
import { startCacheStack } from './support/cache.js';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { sha256Hex } from './support/models.js';
import { makeListModel, OLLAMA_LIST, pullListModel, pushListModel } from './support/ollama-list.js';
import { ollamaPull } from './support/ollama-client.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir } from './support/server.js';

const AUTH = `Basic ${Buffer.from('dev:dev password').toString('base64')}`;
const digestOf = (b: Buffer) => `sha256:${sha256Hex(b)}`;

test('an ollama manifest list: pushed (children as blobs), stored verbatim, pulled per runner; a list with a missing child is refused', async () => {
  const reg = await startTestRegistry();
  try {
    await addUser(reg, 'dev', 'dev password', 'team');
    const m = makeListModel('push');
    const bad = makeListModel('missing child');
    const r = await request(reg.url, '/v2/team/llm/manifests/broken', { method: 'PUT', headers: { Authorization: AUTH, 'Content-Type': OLLAMA_LIST }, body: bad.list });
    assert.equal(r.status, 404);
    assert.equal(r.json().errors[0].code, 'MANIFEST_BLOB_UNKNOWN');
    // A child whose layer was never pushed: refused too.
    const child = m.children.ggml!;
    await request(reg.url, `/v2/team/llm/blobs/uploads/?digest=${child.digest}`, { method: 'POST', headers: { Authorization: AUTH }, body: child.manifest });
    const partial = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: OLLAMA_LIST,
      manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: child.digest, size: child.manifest.length, runner: 'ggml', format: 'gguf' }],
    }));
    const r2 = await request(reg.url, '/v2/team/llm/manifests/partial', { method: 'PUT', headers: { Authorization: AUTH, 'Content-Type': OLLAMA_LIST }, body: partial });
    assert.equal(r2.status, 404, r2.text());
    assert.match(r2.json().errors[0].message, /child manifest .* names blob/);
    await pushListModel(reg.url, 'team/llm', '1', m, AUTH);
    assert.deepEqual(await readFile(path.join(reg.data, 'manifests', 'ollama-registry.local', 'team', 'llm', '1')), m.list);
    for (const runner of ['ggml', 'mlx']) {
      const got = await pullListModel(reg.url, 'team/llm', '1', runner);
      assert.equal(got.contentType, OLLAMA_LIST);
      assert.deepEqual(got.list, m.list);
      assert.deepEqual(got.child, m.children[runner]!.manifest);
    }
    assert.equal((await verifyStore(reg.app, {})).ok, true);
  } finally {
    await reg.close();
  }
});

test('gc keeps every child of a list and their blobs; they go with the list', async () => {
  const reg = await startTestRegistry({ config: { allowDelete: true } });
  try {
    await addUser(reg, 'dev', 'dev password', 'team', ['pull', 'push', 'delete']);
    const m = makeListModel('gc');
    await pushListModel(reg.url, 'team/llm', '1', m, AUTH);
    await sleep(1100); // past the 1 s grace period
    const kept = await runGc(reg.app, { graceMs: 1000 });
    assert.deepEqual(kept.removed, []);
    await pullListModel(reg.url, 'team/llm', '1', 'mlx');
    assert.equal((await request(reg.url, '/v2/team/llm/manifests/1', { method: 'DELETE', headers: { Authorization: AUTH } })).status, 202);
    const gone = await runGc(reg.app, { graceMs: 1000 });
    assert.deepEqual(gone.removed.map((b) => b.digest).sort(), m.all.map(digestOf).sort());
  } finally {
    await reg.close();
  }
});

test('export and import carry a list with every child and blob', async () => {
  const reg = await startTestRegistry();
  const out = await tempDir('oreg-list-export-');
  const dest = await tempDir('oreg-list-import-');
  try {
    await addUser(reg, 'dev', 'dev password', 'team');
    const m = makeListModel('export');
    await pushListModel(reg.url, 'team/llm', '1', m, AUTH);
    const e = await cli(['export', 'ollama-registry.local/team/llm:1', '--to', path.join(out, 'b.tar'), '--data', reg.data]);
    assert.equal(e.code, 0, e.stderr);
    const i = await cli(['import', path.join(out, 'b.tar'), '--data', dest]);
    assert.equal(i.code, 0, i.stderr + i.stdout);
  } finally {
    await reg.close();
  }
  const copy = await startTestRegistry({ data: dest });
  try {
    const m = makeListModel('export');
    for (const runner of ['ggml', 'mlx']) assert.deepEqual((await pullListModel(copy.url, 'team/llm', '1', runner)).child, m.children[runner]!.manifest);
  } finally {
    await copy.close();
  }
});

test('through the cache: the list, a child fetched as a blob and its layers cross the link once; /api/pull fetches every child', async () => {
  const s = await startCacheStack();
  try {
    await addUser(s.upstream, 'dev', 'dev password', 'team');
    const m = makeListModel('cache');
    await pushListModel(s.upstream.url, 'team/llm', '1', m, AUTH);
    s.front.reset();
    const before = s.front.blobBytes();
    const got = await pullListModel(s.cache.url, 'team/llm', '1', 'ggml');
    assert.deepEqual(got.list, m.list);
    await pullListModel(s.cache.url, 'team/llm', '1', 'ggml');
    const ggml = [m.children.ggml!.manifest, ...m.children.ggml!.blobs];
    assert.equal(s.front.blobBytes() - before, ggml.reduce((n, b) => n + b.length, 0), 'each blob of the chosen child once');
    // Prefetch fetches the other child and its blobs too.
    await addUser(s.cache, 'admin', 'admin password', 'team');
    const admin = { Authorization: `Basic ${Buffer.from('admin:admin password').toString('base64')}` };
    const r = await request(s.cache.url, '/api/pull', { method: 'POST', body: JSON.stringify({ name: 'team/llm:1' }), headers: admin });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text().trim().split('\n').at(-1)!), { status: 'success' });
    for (const b of m.all) assert.equal(await s.cache.app.blobs.size(digestOf(b)), b.length);
  } finally {
    await s.close();
  }
});

test('version gating of a list: 412 only when the client is too old for every child', async () => {
  const reg = await startTestRegistry();
  try {
    await addUser(reg, 'dev', 'dev password', 'team');
    await pushListModel(reg.url, 'team/new', '1', makeListModel('gated', { requires: { ggml: '0.20.0', mlx: '0.30.0' } }), AUTH);
    await pushListModel(reg.url, 'team/mixed', '1', makeListModel('mixed', { requires: { mlx: '0.30.0' } }), AUTH);
    const get = (repo: string, ua: string) => request(reg.url, `/v2/${repo}/manifests/1`, { headers: { 'User-Agent': ua, Accept: OLLAMA_LIST } });
    const old = await get('team/new', 'ollama/0.12.0 (amd64 linux) Go/go1.24.1');
    assert.equal(old.status, 412);
    assert.equal(old.headers['x-ollama-requires'], '0.20.0');
    assert.match(old.text(), /requires a newer version of Ollama/);
    assert.equal((await get('team/new', 'ollama/0.20.1')).status, 200);
    assert.equal((await get('team/mixed', 'ollama/0.12.0')).status, 200, 'the ggml child needs nothing');
  } finally {
    await reg.close();
  }
});

test('a classic ollama client (Accept: docker v2 only) pulling a list tag gets its GGUF child, and every blob of it', async () => {
  const reg = await startTestRegistry();
  try {
    await addUser(reg, 'dev', 'dev password', 'team');
    const m = makeListModel('classic');
    await pushListModel(reg.url, 'team/llm', '1', m, AUTH);
    const modelsDir = await tempDir('oreg-classic-');
    const res = await ollamaPull(`${reg.hostPort}/team/llm:1`, { modelsDir });
    assert.deepEqual(res.manifestBytes, m.children.ggml!.manifest);
    for (const b of m.children.ggml!.blobs) assert.deepEqual(await readFile(path.join(modelsDir, 'blobs', `sha256-${sha256Hex(b)}`)), b);
    // Clients that know lists, or send no Accept, get the list itself.
    const plain = await request(reg.url, '/v2/team/llm/manifests/1');
    assert.deepEqual(plain.body, m.list);
  } finally {
    await reg.close();
  }
});

test('a classic ollama client through a cold cache gets the GGUF child of an upstream list', async () => {
  const s = await startCacheStack();
  try {
    await addUser(s.upstream, 'dev', 'dev password', 'team');
    const m = makeListModel('classic cache');
    await pushListModel(s.upstream.url, 'team/llm', '1', m, AUTH);
    const res = await ollamaPull(`${s.cache.hostPort}/team/llm:1`, { modelsDir: await tempDir('oreg-classic-cache-') });
    assert.deepEqual(res.manifestBytes, m.children.ggml!.manifest);
    assert.deepEqual((await pullListModel(s.cache.url, 'team/llm', '1', 'mlx')).list, m.list, 'the cache keeps the list itself');
  } finally {
    await s.close();
  }
});
