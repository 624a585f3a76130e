// gc beside other replicas on one Ceph bucket: one gc at a time under a lease in the bucket (a
// second one is refused with a clear message, and runs once the lease is free), the LIST requests
// one gc makes are counted in its report, and replicas that run gc every second while another one
// pushes lose nothing (the grace window plus the reference check before each delete).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { blobKey, gcLeaseKey, MANIFESTS } from '../src/storage/layout.js';
import { acquireLease, releaseLease } from '../src/storage/lease.js';
import { cli } from './support/cli.js';
import { waitFor } from './support/eventually.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush, type OllamaKey } from './support/ollama-client.js';
import { startFaultUpstream } from './support/fault-upstream.js';
import { startReplicas, withReplicas, type Replica } from './support/replicas.js';
import { startTestRegistry, tempDir } from './support/server.js';

const MiB = 1 << 20;
const MODEL = 'application/vnd.ollama.image.model';


/** Push `model` (one 3 MiB layer and a template) to a replica with the ollama client. */
async function push(r: Replica, key: OllamaKey, model: string, seed: string) {
  const dir = await tempDir('oreg-client-');
  const made = await makeModel(dir, {
    host: r.hostPort, namespace: 'team', model, tag: '1',
    layers: [{ mediaType: MODEL, size: 3 * MiB + 1, seed }, { mediaType: 'application/vnd.ollama.image.template', content: `{{ .Prompt }} ${seed}` }],
  });
  const pushed = await ollamaPush(`${r.hostPort}/team/${model}:1`, { modelsDir: dir, key, partSize: MiB });
  return { dir, made, pushed };
}

test('one gc at a time under a lease in the bucket: a second gc is refused while it is held, then runs; its report counts the LIST requests', { timeout: 180_000 }, async (t) => {
  const key = makeOllamaKey();
  await withReplicas(await startReplicas(t, { n: 1, keys: [{ key, namespace: 'team' }] }), async (set) => {
    await push(set.list[0]!, key, 'kept', 'gc lease');
    const store = set.store();
    const data = await tempDir('oreg-gc-cli-');
    const other = await acquireLease(store, gcLeaseKey(), { owner: 'replica-x/gc' }, 60_000);
    assert.ok('lease' in other);
    const refused = await cli(['gc', '--json', '--data', data], { env: set.env, timeoutMs: 60_000 });
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(refused.stderr, /gc is already running in another process \(replica-x\/gc\)/);
    assert.ok(await releaseLease(store, other.lease));
    const ran = await cli(['gc', '--json', '--grace', '0s', '--data', data], { env: set.env, timeoutMs: 60_000 });
    assert.equal(ran.code, 0, ran.stderr);
    const report = JSON.parse(ran.stdout) as { blobs: { total: number; referenced: number }; removed: unknown[]; listCalls: number };
    assert.deepEqual([report.blobs.total, report.blobs.referenced, report.removed.length], [3, 3, 0], 'the model\'s layer, template and config are kept');
    assert.ok(Number.isInteger(report.listCalls) && report.listCalls > 0, `listCalls: ${report.listCalls}`);
    t.diagnostic(`LIST requests of one gc on a bucket with 1 model (3 blobs): ${report.listCalls}`);
    assert.equal(await store.stat(gcLeaseKey()), null, 'the lease is removed when gc is done');
  });
});

test('replicas running gc every second while others push and fill lose nothing; an unreferenced model goes after the grace window', { timeout: 240_000 }, async (t) => {
  const key = makeOllamaKey();
  const gc = { OLLAMA_REGISTRY_GC_INTERVAL: '1s', OLLAMA_REGISTRY_GC_GRACE: '8s' };
  // An upstream behind a 2 MiB/s link: the pull-through fill of its 12 MiB layer spans several gc runs.
  const upstream = await startTestRegistry();
  t.after(() => upstream.close());
  const filled = await makeModel(upstream.data, { model: 'filled', tag: '1', layers: [{ mediaType: MODEL, size: 12 * MiB, seed: 'gc fill' }] });
  const front = await startFaultUpstream(upstream.url, { rate: 2 * MiB });
  t.after(() => front.close());
  await withReplicas(await startReplicas(t, { n: 3, keys: [{ key, namespace: 'team' }], env: gc, args: ['--upstream', front.url] }), async (set) => {
    const [a, b, c] = set.list as [Replica, Replica, Replica];
    const store = set.store();
    // A cold pull through replica c, running while the pushes and the gc runs below go on.
    const fillDir = await tempDir('oreg-fill-client-');
    const fill = ollamaPull(`${c.hostPort}/library/filled:1`, { modelsDir: fillDir });
    // A model whose tag goes (as if deleted): its blobs are garbage once past the grace window.
    const gone = await push(b, key, 'gone', 'gc garbage');
    for await (const e of store.entries(MANIFESTS)) if (e.key.includes('/team/gone/')) await store.delete(e.key);
    // Pushed while gc runs on every replica: blobs commit before their manifest, each younger than the grace window.
    const kept = [await push(b, key, 'kept', 'gc kept b'), await push(c, key, 'kept2', 'gc kept c')];
    // Its blobs but the config, which every model made here shares.
    const shared = new Set(kept.flatMap((k) => k.made.blobs.map((bl) => bl.digest)));
    const garbage = gone.made.blobs.filter((bl) => !shared.has(bl.digest));
    assert.equal(garbage.length, 2);
    await waitFor(async () => {
      for (const bl of garbage) if (await store.stat(blobKey(bl.digest))) return false;
      return true;
    }, 60_000, 500).catch(async (e) => {
      const keys = [];
      for await (const k of store.entries('blobs')) keys.push(`${k.key} ${k.size}`);
      throw new Error(`${(e as Error).message}: ${garbage.map((g) => g.digest).join(', ')} in ${keys.join(', ')}`);
    });
    // Another round or two of gc after that, then everything pushed is whole, from a replica that pushed nothing.
    const runs = () => set.list.reduce((n, r) => n + (r.reg.output().match(/"msg":"gc done"/g)?.length ?? 0), 0);
    const after = runs();
    await waitFor(() => runs() >= after + 2, 30_000, 200);
    for (const [i, k] of kept.entries()) {
      const name = i === 0 ? 'kept' : 'kept2';
      const out = await tempDir('oreg-pullback-');
      await ollamaPull(`${a.hostPort}/team/${name}:1`, { modelsDir: out });
      for (const bl of k.made.blobs) {
        const f = `sha256-${bl.digest.slice(7)}`;
        assert.deepEqual(await readFile(path.join(out, 'blobs', f)), await readFile(path.join(k.dir, 'blobs', f)), `${name} ${bl.digest}`);
      }
    }
    // The fill ran through gc runs on every replica: the client got every byte, and the blobs stay in the bucket.
    await fill;
    for (const bl of filled.blobs) {
      const f = `sha256-${bl.digest.slice(7)}`;
      assert.deepEqual(await readFile(path.join(fillDir, 'blobs', f)), await readFile(path.join(upstream.data, 'blobs', f)), `filled ${bl.digest}`);
      assert.ok(await store.stat(blobKey(bl.digest)), `filled ${bl.digest} is in the bucket`);
    }
    assert.ok(!/gc failed/.test(set.output()), 'no gc failed');
    const skipped = set.output().match(/gc skipped: another process is running it/g)?.length ?? 0;
    const lists = [...set.output().matchAll(/"msg":"gc done"[^\n]*|"listCalls":(\d+)[^\n]*"msg":"gc done"/g)].map((m) => m[1]).filter(Boolean);
    t.diagnostic(`gc runs: ${runs()}, skipped while another held the lease: ${skipped}, LIST requests per run: ${[...new Set(lists)].join(', ')}`);
  });
});
