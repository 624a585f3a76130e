// gc: frees what no manifest references, never what a push or a fill is about to reference,
// cleans up staging files of dead processes, and runs on a schedule inside `serve`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { runGc } from '../src/registry/housekeeping/gc.js';
import { ownerName } from '../src/registry/housekeeping/usage.js';
import { fillLeaseKey } from '../src/storage/layout.js';
import { acquireLease } from '../src/storage/lease.js';
import { verifyStore } from '../src/registry/housekeeping/verify.js';
import { cli } from './support/cli.js';
import { waitFor } from './support/eventually.js';
import { request } from './support/http.js';
import { makeModel, sha256Hex, writeBlob } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { spawnRegistry, startTestRegistry, tempDir } from './support/server.js';

const blobFile = (dir: string, digest: string) => path.join(dir, 'blobs', `sha256-${digest.slice(7)}`);
const exists = (p: string) => access(p).then(() => true, () => false);
const MODEL = 'application/vnd.ollama.image.model';
const digestOf = (s: string) => `sha256:${sha256Hex(s)}`;

function manifestFor(config: { digest: string; size: number }, layers: Array<{ digest: string; size: number }>): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', ...config },
    layers: layers.map((l) => ({ mediaType: MODEL, ...l })),
  }));
}

test('gc frees unreferenced blobs only (config included); a blob shared by two tags stays until both go; --dry-run frees nothing', async () => {
  const data = await tempDir();
  const shared = { mediaType: 'application/vnd.ollama.image.license', content: 'license shared by a and b' };
  const a = await makeModel(data, { model: 'a', layers: [{ mediaType: MODEL, size: 30_000, seed: 'a' }, shared] });
  const b = await makeModel(data, { model: 'b', layers: [{ mediaType: MODEL, size: 20_000, seed: 'b' }, shared] });
  await makeModel(data, { host: 'hf.co', namespace: 'u', model: 'c', tag: 'Q4', layers: [{ mediaType: MODEL, size: 10_000, seed: 'c' }] });
  const orphan = await writeBlob(data, { content: 'nobody references me' });
  const aLayer = a.blobs.find((x) => x.size === 30_000)!;
  const license = a.blobs.find((x) => x.mediaType.endsWith('license'))!;
  const config = a.blobs.find((x) => x.mediaType.includes('container'))!;

  assert.equal((await cli(['rm', 'a', '--data', data])).stdout.split('\n')[0], 'removed registry.ollama.ai/library/a:latest');
  const dry = await cli(['gc', '--dry-run', '--grace', '0', '--data', data]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /would remove 2 blob\(s\), 30 KB/);
  assert.ok(await exists(blobFile(data, aLayer.digest)));

  const r = await cli(['gc', '--grace', '0', '--json', '--data', data]);
  const rep = JSON.parse(r.stdout);
  assert.deepEqual(rep.removed.map((x: { digest: string }) => x.digest).sort(), [aLayer.digest, orphan.digest].sort());
  assert.ok(!(await exists(blobFile(data, aLayer.digest))));
  assert.ok(await exists(blobFile(data, license.digest)), 'b still uses the shared license');
  assert.ok(await exists(blobFile(data, config.digest)), 'config blobs are references too');
  assert.ok(!(await exists(blobFile(data, orphan.digest))));

  await cli(['rm', 'b', '--data', data]);
  const again = JSON.parse((await cli(['gc', '--grace', '0', '--json', '--data', data])).stdout);
  assert.ok(again.removed.some((x: { digest: string }) => x.digest === license.digest), 'the shared blob goes with its last tag');
  assert.ok(b.blobs.every((x) => x.digest === config.digest || again.removed.some((y: { digest: string }) => y.digest === x.digest)));
  assert.equal((await cli(['verify', '--data', data])).code, 0);
});

test('gc racing a push and a fill: blobs published during the run, young blobs and blobs referenced again just before their delete all survive', async () => {
  const data = await tempDir();
  const base = await makeModel(data, { model: 'base', layers: [{ mediaType: MODEL, size: 5000, seed: 'base' }] });
  const cfg = base.blobs.find((x) => x.mediaType.includes('container'))!;
  const oldGarbage = await writeBlob(data, { content: 'old garbage' });
  const oldReused = await writeBlob(data, { content: 'old, then pushed again' });
  await sleep(1100); // older than the 1 s grace period
  const reg = await startTestRegistry({ data });
  // Written once the registry is up, so a slow start cannot age it past the grace period.
  const young = await writeBlob(data, { content: 'young: a push committed me, its manifest comes next' });
  try {
    const { app } = reg;
    const fill = Buffer.from('published by a fill during the gc run');
    const pushLayer = Buffer.from('a layer pushed during the gc run');
    let rescuedByHook = false;
    const report = await runGc(app, {
      graceMs: 1000,
      hooks: {
        // Between listing and sweeping: a fill publishes a blob (no manifest yet) and a push
        // lands a whole model.
        afterList: async () => {
          await app.blobs.put(digestOf(fill.toString()), Readable.from([fill]), fill.length);
          await app.blobs.put(digestOf(pushLayer.toString()), Readable.from([pushLayer]), pushLayer.length);
          await app.manifests.put({ host: 'registry.ollama.ai', namespace: 'team', model: 'new', tag: 'latest' },
            manifestFor(cfg, [{ digest: digestOf(pushLayer.toString()), size: pushLayer.length }]));
        },
        // Right before the old unreferenced blob is deleted, a push whose client found it
        // present (HEAD 200) PUTs a manifest that references it.
        beforeDelete: async (d) => {
          if (d !== oldReused.digest) return;
          rescuedByHook = true;
          await app.manifests.put({ host: 'registry.ollama.ai', namespace: 'team', model: 'reused', tag: '1' }, manifestFor(cfg, [oldReused]));
        },
      },
    });
    assert.ok(rescuedByHook);
    assert.deepEqual(report.removed.map((x) => x.digest), [oldGarbage.digest]);
    assert.equal(report.blobs.young, 1);
    assert.equal(report.blobs.rescued, 1);
    for (const d of [young.digest, oldReused.digest, digestOf(fill.toString()), digestOf(pushLayer.toString()), ...base.blobs.map((x) => x.digest)]) {
      assert.ok(await exists(blobFile(data, d)), `${d} must survive`);
    }
    // Both pushed models pull whole with the ollama client.
    for (const name of ['team/reused:1', 'team/new:latest']) {
      const modelsDir = await tempDir('oreg-client-');
      await ollamaPull(`${reg.hostPort}/${name}`, { modelsDir });
    }
  } finally {
    await reg.close();
  }
});

test('gc under load: pulls over HTTP, pushes and fills landing while gc runs again and again; nothing referenced ever goes', async (t) => {
  const data = await tempDir();
  const served = await makeModel(data, { model: 'served', layers: [{ mediaType: MODEL, size: 300_000, seed: 'served' }] });
  const cfg = served.blobs.find((x) => x.mediaType.includes('container'))!;
  const garbage = await Promise.all([1, 2, 3].map((i) => writeBlob(data, { content: `garbage ${i}` })));
  // The grace period must cover a writer's gap between blob and manifest even on a loaded
  // machine (a busy CI box stalls the event loop for hundreds of ms), so it is 2 s here.
  await sleep(2100);
  const reg = await startTestRegistry({ data });
  const { app } = reg;
  const graceMs = 2000;
  let stop = false;
  let gcRuns = 0;
  let landed = 0;
  let pulls = 0;
  try {
    const gcLoop = (async () => {
      while (!stop) {
        await runGc(app, { graceMs });
        gcRuns++;
      }
    })();
    // Pushes (blob committed, manifest PUT a little later) and fills (blob published, manifest
    // written when the client's manifest request completes), well within the grace period.
    const writers = [0, 1].map((w) => (async () => {
      for (let i = 0; !stop; i++) {
        const bytes = Buffer.from(`writer ${w} blob ${i} ${'x'.repeat(1000 * (i % 7))}`);
        const digest = digestOf(bytes.toString());
        if (w === 0) await app.blobs.put(digest, Readable.from([bytes]), bytes.length);
        else {
          const staged = path.join(app.scratch, `fill${i}`);
          await writeFile(staged, bytes);
          await app.blobs.publishFile(staged, digest);
        }
        await sleep(20 + Math.random() * 80);
        await app.manifests.put({ host: w === 0 ? 'registry.ollama.ai' : 'hf.co', namespace: `w${w}`, model: `m${i}`, tag: 'latest' }, manifestFor(cfg, [{ digest, size: bytes.length }]));
        landed++;
      }
    })());
    const puller = (async () => {
      while (!stop) {
        const modelsDir = await tempDir('oreg-client-');
        await ollamaPull(`${reg.hostPort}/library/served:latest`, { modelsDir });
        assert.deepEqual(await readFile(path.join(modelsDir, 'manifests', reg.hostPort, 'library', 'served', 'latest')), served.manifestBytes);
        pulls++;
      }
    })();
    // Until gc has run several times with writes and pulls in between (however long a busy machine takes).
    const loops = Promise.all([gcLoop, ...writers, puller]);
    try {
      await Promise.race([waitFor(() => gcRuns >= 3 && landed >= 10 && pulls >= 2, 120_000), loops]);
    } finally {
      stop = true;
      await loops;
    }
    t.diagnostic(`${gcRuns} gc runs, ${landed} pushed/filled models landed, ${pulls} whole pulls over HTTP`);
    for (const g of garbage) assert.ok(!(await exists(blobFile(data, g.digest))), 'old garbage is collected');
    const v = await verifyStore(app);
    assert.deepEqual(v.broken, [], 'every manifest still has all its blobs');
    assert.ok(v.ok);
  } finally {
    stop = true;
    await reg.close();
  }
});

test('gc removes staging files whose writer is gone, upload sessions and fills nobody owns (no live lease) that sat idle; keeps live and recent ones', async () => {
  const data = await tempDir();
  const reg = await startTestRegistry({ data });
  try {
    const dead = await new Promise<number>((resolve) => {
      const c = spawn(process.execPath, ['-e', '']);
      c.on('exit', () => resolve(c.pid!));
    });
    const st = path.join(data, '.ollama-registry');
    const old = new Date(Date.now() - 2 * 86400_000);
    const file = async (rel: string, body = 'x'.repeat(100), time?: Date) => {
      const p = path.join(st, rel);
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, body);
      if (time) await utimes(p, time, time);
    };
    await file(`tmp/${dead}-0a0a`, undefined, old);
    await file(`tmp/${dead}-0b0b`); // recent: within the grace period
    await file(`tmp/${process.pid}-0c0c`, undefined, old); // owner alive
    // Upload sessions: a record in the store, bytes in the scratch folder. The live one's record is
    // recent (uploads.ts rewrites it while parts arrive); a scratch file without a record is a torn session.
    const [stale, active, torn] = ['0a000000-0000-4000-8000-000000000001', '0a000000-0000-4000-8000-000000000002', '0a000000-0000-4000-8000-000000000003'];
    await file(`uploads/${stale}/info.json`, '{}', old);
    await file(`scratch/uploads/${stale}`, undefined, old);
    await file(`uploads/${active}/info.json`, '{}');
    await file(`scratch/uploads/${active}`, undefined, old);
    await file(`scratch/uploads/${torn}`, undefined, old);
    const h1 = 'a'.repeat(64);
    const h2 = 'b'.repeat(64);
    await file(`fills/sha256-${h1}/data`, undefined, old); // left in the store by an older version
    await file(`fills/sha256-${h1}/lock`, String(dead), old);
    // Fills stage in the scratch folder: one nobody holds a lease on, one whose owner renews its lease.
    const scratchFill = async (hex: string, files = ['data', 'state.json'], time = old) => {
      const dir = path.join(reg.app.scratch, 'fills', `sha256-${hex}`);
      await mkdir(dir, { recursive: true });
      for (const f of files) {
        await writeFile(path.join(dir, f), 'y'.repeat(50));
        await utimes(path.join(dir, f), time, time);
      }
      return dir;
    };
    const free = await scratchFill(h2);
    // Without a state nobody can resume it: it goes after the grace period, not the 24 h idle time.
    const tornFill = await scratchFill('d'.repeat(64), ['data'], new Date(Date.now() - 2 * 3600_000));
    const resumable = await scratchFill('e'.repeat(64), ['data', 'state.json'], new Date(Date.now() - 2 * 3600_000));
    const leased = await scratchFill('c'.repeat(64));
    assert.ok('lease' in (await acquireLease(reg.app.driver, fillLeaseKey(`sha256:${'c'.repeat(64)}`), { owner: 'alive' }, 3600_000)));

    const dry = await runGc(reg.app, { graceMs: 3600_000, dryRun: true });
    const want = [`.ollama-registry/tmp/${dead}-0a0a`, `.ollama-registry/uploads/${stale}`, `.ollama-registry/uploads/${torn}`, `.ollama-registry/fills/sha256-${h1}`, free, tornFill];
    assert.deepEqual(dry.staging.removed.sort(), [...want].sort());
    assert.ok(await exists(path.join(st, `tmp/${dead}-0a0a`)));
    const r = await runGc(reg.app, { graceMs: 3600_000 });
    assert.deepEqual(r.staging.removed.sort(), [...want].sort());
    assert.equal(r.staging.bytes, 400 + String(dead).length + 150);
    for (const w of [...want, `.ollama-registry/scratch/uploads/${stale}`, `.ollama-registry/scratch/uploads/${torn}`]) assert.ok(!(await exists(path.isAbsolute(w) ? w : path.join(data, w))), w);
    const kept = [`tmp/${dead}-0b0b`, `tmp/${process.pid}-0c0c`, `uploads/${active}/info.json`, `scratch/uploads/${active}`];
    for (const k of kept) assert.ok(await exists(path.join(st, k)), k);
    assert.ok(await exists(path.join(leased, 'data')), 'a fill under a live lease stays');
    assert.ok(await exists(path.join(resumable, 'state.json')), 'a resumable fill stays for the idle time');
  } finally {
    await reg.close();
  }
});

test('serve runs gc on its schedule and saves last-pull times', async () => {
  const data = await tempDir();
  await makeModel(data, { model: 'kept', layers: [{ mediaType: MODEL, size: 1000, seed: 'k' }] });
  const orphan = await writeBlob(data, { content: 'collected by the scheduled gc' });
  const reg = await spawnRegistry(['--data', data], { OLLAMA_REGISTRY_GC_INTERVAL: '0.3', OLLAMA_REGISTRY_GC_GRACE: '0' });
  try {
    // The orphan goes, then the run's log line (logs are written asynchronously): wait for both, bounded.
    await waitFor(async () => !(await exists(blobFile(data, orphan.digest))), 60_000, 100).catch(() => assert.fail(`scheduled gc did not run:\n${reg.output()}`));
    await waitFor(() => /gc done/.test(reg.output()), 10_000, 50).catch(() => assert.fail(`no "gc done" line:\n${reg.output()}`));
    assert.equal((await request(reg.url, '/v2/library/kept/manifests/latest')).status, 200);
  } finally {
    await reg.stop();
  }
  const saved = JSON.parse(await readFile(path.join(data, '.ollama-registry', 'last-pulled', `${ownerName()}.json`), 'utf8'));
  assert.ok(Date.now() - saved['registry.ollama.ai/library/kept:latest'] < 60_000);
  const ls = await cli(['ls', '--data', data]);
  assert.match(ls.stdout, /registry\.ollama\.ai\/library\/kept:latest .* (just now|seconds? ago) /);
});
