// The size cap: least-recently-pulled cached tags go first; pushed/local and pinned tags never;
// a blob shared by several tags goes with the last of them.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { defaults } from '../src/config.js';
import { runGc } from '../src/registry/housekeeping/gc.js';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';

const MODEL = 'application/vnd.ollama.image.model';
const exists = (p: string) => access(p).then(() => true, () => false);

test('eviction order, pinned and local exceptions, shared blobs, dry run; last pulls kept in memory only', async () => {
  const data = await tempDir();
  const shared = { mediaType: MODEL, size: 50_000, seed: 'shared by b and c' };
  const a = await makeModel(data, { model: 'a', layers: [{ mediaType: MODEL, size: 100_000, seed: 'a' }] });
  const b = await makeModel(data, { model: 'b', layers: [{ mediaType: MODEL, size: 100_000, seed: 'b' }, shared] });
  const c = await makeModel(data, { model: 'c', layers: [{ mediaType: MODEL, size: 100_000, seed: 'c' }, shared] });
  // A pushed model: under a host folder that is not an upstream's.
  const d = await makeModel(data, { host: 'registry.local', namespace: 'team', model: 'd', layers: [{ mediaType: MODEL, size: 100_000, seed: 'd' }] });
  const file = (m: typeof a, size: number) => path.join(data, 'blobs', `sha256-${m.blobs.find((x) => x.size === size)!.digest.slice(7)}`);
  const config = { storage: { ...defaults().storage, cachedHosts: ['registry.ollama.ai'] } };
  const reg = await startTestRegistry({ data, config });
  const pull = async (name: string) => {
    assert.equal((await request(reg.url, `/v2/${name}/manifests/latest`)).status, 200);
    await sleep(15);
  };
  try {
    // Pulled a, b, c, d, then a again: least recently pulled first is b, then c, then a.
    for (const n of ['library/a', 'library/b', 'library/c', 'team/d', 'library/a']) await pull(n);
    assert.ok(!(await exists(path.join(data, '.ollama-registry', 'last-pulled'))), 'no disk write per request');
    const opts = { graceMs: 0, usage: reg.app.usage };
    // 450,151 bytes of blobs (configs are shared by all four).
    const dry = await runGc(reg.app, { ...opts, maxSize: 400_000, dryRun: true });
    assert.deepEqual(dry.evicted.map((e) => e.name), ['registry.ollama.ai/library/b:latest']);
    assert.ok(await exists(b.manifestPath));

    const r1 = await runGc(reg.app, { ...opts, maxSize: 400_000 });
    assert.deepEqual(r1.evicted.map((e) => [e.name, e.freed]), [['registry.ollama.ai/library/b:latest', 100_000]]);
    assert.ok(!(await exists(b.manifestPath)) && !(await exists(file(b, 100_000))));
    assert.ok(await exists(file(c, 50_000)), 'c still uses the shared blob');
    assert.equal(r1.usedBytes, 350_000 + a.blobs.at(-1)!.size);
    assert.equal(r1.overCap, 0);

    // c is pinned: a goes instead, and what is left (pinned c, pushed d) stays over the cap.
    const pin = await cli(['pin', 'c', '--data', data]);
    assert.equal(pin.stdout, 'pinned registry.ollama.ai/library/c:latest\n');
    const r2 = await runGc(reg.app, { ...opts, maxSize: 200_000 });
    assert.deepEqual(r2.evicted.map((e) => e.name), ['registry.ollama.ai/library/a:latest']);
    assert.ok(await exists(c.manifestPath) && await exists(d.manifestPath));
    assert.ok(r2.overCap > 0);

    // Unpinned, c goes, and with it the shared blob (its last user).
    assert.equal((await cli(['unpin', 'c', '--data', data])).code, 0);
    const r3 = await runGc(reg.app, { ...opts, maxSize: 200_000 });
    assert.deepEqual(r3.evicted.map((e) => [e.name, e.freed]), [['registry.ollama.ai/library/c:latest', 150_000]]);
    assert.ok(!(await exists(file(c, 50_000))));
    assert.equal(r3.overCap, 0);
    assert.ok(await exists(d.manifestPath), 'pushed models are never evicted');
    const r4 = await runGc(reg.app, { ...opts, maxSize: 1 });
    assert.deepEqual(r4.evicted, []);
    assert.ok(r4.overCap > 0);
  } finally {
    await reg.close();
  }
});

test('gc --max-size from the command line; a tag pulled within the grace period is not evicted', async () => {
  const data = await tempDir();
  await makeModel(data, { model: 'x', layers: [{ mediaType: MODEL, size: 100_000, seed: 'x' }] });
  await makeModel(data, { model: 'y', layers: [{ mediaType: MODEL, size: 100_000, seed: 'y' }] });
  const env = { OLLAMA_REGISTRY_CACHED_HOSTS: 'registry.ollama.ai' };
  // Both manifests are brand new (their time counts as a pull): the default 1 h grace keeps them.
  const kept = await cli(['gc', '--max-size', '150KB', '--data', data], { env });
  assert.equal(kept.code, 0, kept.stderr);
  assert.match(kept.stdout, /still 50 KB over the cap: the rest is pushed\/local, pinned or pulled within 1h/);
  const r = await cli(['gc', '--max-size', '150KB', '--grace', '0', '--data', data], { env });
  assert.match(r.stdout, /evicted registry\.ollama\.ai\/library\/(x|y):latest \(last pulled .*; frees 100 KB\)/);
  assert.match(r.stdout, /removed 1 blob\(s\), 100 KB/);
  assert.match(r.stdout, /blobs take 100 KB of the 150 KB cap/);
  const usage = await cli(['gc', '--max-size', 'lots', '--data', data]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /config: storage\.maxSize: expected a size such as 500GB/);
});
