// Replicas bench (issue 16): one blob pulled by 6 clients at once (each as ollama does: its
// parts, 16 at a time, over curl) spread over 1, 2 and 3 `serve` replicas on one Ceph bucket,
// against one replica on the filesystem; and the push of a model with the ollama client emulation
// to a replica on Ceph against one on the filesystem. Every figure is a ratio to the filesystem
// replica measured in the same run. Ceph here is one node (memstore) on the same 2 cores as the
// replicas and the clients, so this shows the registry's overhead on S3, not Ceph's scaling.
//
// Ceph: OREG_S3_ENDPOINT, or a throwaway one (bench/s3.ts).
//   node dist/bench/replicas.js [--rounds N] [--mib N]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from '../test/support/cli.js';
import { makeModel } from '../test/support/models.js';
import { makeOllamaKey, ollamaPush, type OllamaKey } from '../test/support/ollama-client.js';
import { replicasOn } from '../test/support/replicas.js';
import { spawnRegistry, tempDir, type SpawnedRegistry } from '../test/support/server.js';
import { startFaultUpstream } from '../test/support/fault-upstream.js';
import { makeFixture, type Fixture } from './lib/fixture.js';
import { ollamaParts, partsDownload, timed } from './lib/load.js';
import { installCleanupHandlers, run, track } from './lib/procs.js';
import { median, type Row } from './lib/table.js';
import { cephEndpoint } from './s3.js';

const MiB = 1 << 20;
const CLIENTS = 6;

export interface ReplicasBenchOptions {
  rounds?: number;
  /** Blob size in MiB (default 256). */
  mib?: number;
}

/** `CLIENTS` whole-blob downloads at once, client i through urls[i % n]; the aggregate MB/s. */
async function pullAll(urls: string[], blobPath: string, size: number): Promise<number> {
  const t = await timed(async () => {
    const got = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => partsDownload(urls[i % urls.length]! + blobPath, ollamaParts(size))));
    return got.reduce((a, b) => a + b, 0);
  });
  return t.mbps;
}

/** A model of one `size` layer pushed by the ollama client emulation; MB/s of the layer. */
async function pushOnce(reg: SpawnedRegistry, key: OllamaKey, size: number, seed: string): Promise<number> {
  const dir = await tempDir('oreg-bench-push-');
  await makeModel(dir, { host: reg.hostPort, namespace: 'bench', model: 'pushed', tag: seed, layers: [{ mediaType: 'application/vnd.ollama.image.model', size, seed }] });
  const t0 = performance.now();
  await ollamaPush(`${reg.hostPort}/bench/pushed:${seed}`, { modelsDir: dir, key, insecure: true });
  return size / ((performance.now() - t0) / 1000) / 1e6;
}

/** A cold pull by CLIENTS clients spread over two new replicas whose upstream is `upstreamUrl` behind a byte counter: MB/s, and upstream bytes / blob size. */
async function coldPull(endpoint: string, upstreamUrl: string, f: Fixture): Promise<{ mbps: number; upstream: number }> {
  const front = await startFaultUpstream(upstreamUrl);
  const set = await replicasOn(endpoint, { n: 2, args: ['--upstream', front.url] });
  for (const r of set.list) track(r.reg.child); // killed with the bench if it is interrupted
  try {
    // The manifest first, as ollama asks; then the blob from every client at once.
    for (const r of set.list) await run('curl', ['-sSf', '-o', '/dev/null', '--noproxy', '*', r.url + f.manifestPath]);
    front.reset();
    const mbps = await pullAll(set.list.map((r) => r.url), f.blobPath, f.size);
    return { mbps, upstream: front.blobBytes() / f.size };
  } finally {
    await set.stop();
    await front.close();
  }
}

function row(metric: string, ours: number[], fs: number[]): Row {
  const [a, b] = [median(ours), median(fs)];
  return { metric, unit: 'MB/s', ours: a, oursRuns: ours, baseline: b, baselineRuns: fs, baselineName: '1 replica on fs', ratio: a / b, goal: 'report (Ceph / fs)' };
}

export async function benchReplicas(o: ReplicasBenchOptions = {}): Promise<Row[]> {
  const rounds = o.rounds ?? 2;
  const size = (o.mib ?? 256) * MiB;
  const ceph = await cephEndpoint();
  const fixture = makeFixture(size);
  const key = makeOllamaKey();
  const keyEnv = async (env: NodeJS.ProcessEnv, data: string) => {
    const r = await cli(['keys', 'add', key.publicKeyLine, '--namespace', 'bench', '--data', data], { env, timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`keys add: ${r.stderr}`);
  };
  await keyEnv({}, fixture.dir);
  const fs = await spawnRegistry(['--data', fixture.dir]);
  track(fs.child);
  const set = await replicasOn(ceph.endpoint, { n: 3, keys: [{ key, namespace: 'bench' }] });
  for (const r of set.list) track(r.reg.child);
  const pulls: Record<string, number[]> = { fs: [], 1: [], 2: [], 3: [] };
  const push = { s3: [] as number[], fs: [] as number[] };
  const cold: Array<{ mbps: number; upstream: number }> = [];
  try {
    // The same blob and manifest in the bucket, as `import` puts them there.
    const imported = await cli(['import', fixture.dir, '--data', await tempDir('oreg-bench-import-')], { env: set.env, timeoutMs: 600_000 });
    if (imported.code !== 0) throw new Error(`import: ${imported.stderr}`);
    const urls = set.list.map((r) => r.url);
    for (let r = 0; r < rounds; r++) {
      pulls.fs!.push(await pullAll([fs.url], fixture.blobPath, size));
      for (const n of [1, 2, 3]) pulls[n]!.push(await pullAll(urls.slice(0, n), fixture.blobPath, size));
      push.fs.push(await pushOnce(fs, key, size, `fs-${r}`));
      push.s3.push(await pushOnce(set.list[r % 3]!.reg, key, size, `s3-${r}`));
      cold.push(await coldPull(ceph.endpoint, fs.url, fixture));
    }
  } finally {
    await Promise.all([set.stop(), fs.stop()]);
    await ceph.stop();
  }
  const mib = o.mib ?? 256;
  return [
    row(`${CLIENTS} clients pull one ${mib} MiB blob: 1 replica on Ceph`, pulls[1]!, pulls.fs!),
    row(`${CLIENTS} clients pull one ${mib} MiB blob: 2 replicas on Ceph`, pulls[2]!, pulls.fs!),
    row(`${CLIENTS} clients pull one ${mib} MiB blob: 3 replicas on Ceph`, pulls[3]!, pulls.fs!),
    row(`cold pull of the ${mib} MiB blob by ${CLIENTS} clients through 2 replicas on Ceph (upstream: the fs replica; ` +
      `upstream bytes ${cold.map((c) => `${c.upstream.toFixed(2)}x`).join(', ')} the blob)`, cold.map((c) => c.mbps), pulls.fs!),
    row(`push of a ${mib} MiB model (ollama client) to a replica on Ceph`, push.s3, push.fs),
  ];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  installCleanupHandlers();
  const args = process.argv.slice(2);
  const num = (flag: string): number | undefined => (args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : undefined);
  const { printTable } = await import('./lib/table.js');
  printTable('replicas: pulls through 1-3 replicas on Ceph RGW (one node, memstore) and a push, vs one replica on fs', await benchReplicas({ rounds: num('--rounds'), mib: num('--mib') }));
}
