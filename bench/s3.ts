// S3 bench (issue 16), a skeleton until `serve` runs on S3: the same blob written and served
// through the S3 driver on a real Ceph RADOS Gateway, against the filesystem driver, in one run,
// reported as ratios (S3 / fs). Push: a streamed write (create → commit; the fs driver fsyncs,
// Ceph here is a one-node memstore). GET: the driver's read piped into a loopback HTTP response,
// fetched with curl, as the registry will serve a blob. Later: pulls through 1, 2 and 3 replicas,
// and a cold pull through two replicas counting upstream bytes.
//
// Ceph: OREG_S3_ENDPOINT, or a throwaway one started with scripts/s3-test-server.sh.
//   node dist/bench/s3.js [--rounds N] [--mib N]
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Driver } from '../src/storage/driver.js';
import { FsDriver } from '../src/storage/fs.js';
import { S3Driver } from '../src/storage/s3.js';
import { newBucket, S3_CREDENTIALS } from '../test/support/s3.js';
import { curlGet, timed } from './lib/load.js';
import { freePort, installCleanupHandlers, removeFolder, trackFolder } from './lib/procs.js';
import { median, type Row } from './lib/table.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/s3-test-server.sh', import.meta.url));
const exec = promisify(execFile);
const CHUNK = 1 << 20;

export interface S3BenchOptions {
  rounds?: number;
  /** Blob size in MiB (default 512). */
  mib?: number;
}

export async function cephEndpoint(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  if (process.env.OREG_S3_ENDPOINT) return { endpoint: process.env.OREG_S3_ENDPOINT, stop: async () => {} };
  const dir = trackFolder(mkdtempSync(path.join(os.tmpdir(), 'oreg-bench-ceph-')));
  const base = 43000 + 100 * Math.floor(Math.random() * 50);
  const env = { ...process.env, MON_PORT: String(base), RGW_PORT: String(base + 100) };
  const stop = async (): Promise<void> => {
    await exec(SCRIPT, ['stop', dir], { timeout: 60_000 });
    removeFolder(dir);
  };
  try {
    const { stdout } = await exec(SCRIPT, ['start', dir], { env, timeout: 120_000 });
    return { endpoint: stdout.trim().split('\n').pop()!, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Streams `bytes` (one random MiB, repeated) into a pending write; returns the bytes written. */
async function push(d: Driver, key: string, bytes: number, chunk: Buffer): Promise<number> {
  const w = await d.create(key);
  for (let done = 0; done < bytes; done += CHUNK) {
    if (!w.stream.write(chunk.subarray(0, Math.min(CHUNK, bytes - done)))) await new Promise((r) => w.stream.once('drain', r));
  }
  return (await w.commit()).size;
}

/** A loopback server answering GET /KEY with the driver's bytes, as a blob GET does. */
async function serve(d: Driver): Promise<{ url: string; close: () => void }> {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    d.read(req.url!.slice(1)).then((body) => pipeline(body, res)).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}/`, close: () => server.close() };
}

function row(metric: string, s3: number[], fs: number[], goal: string): Row {
  const ours = median(s3);
  const baseline = median(fs);
  return { metric, unit: 'MB/s', ours, oursRuns: s3, baseline, baselineRuns: fs, baselineName: 'fs driver', ratio: ours / baseline, goal };
}

export async function benchS3(o: S3BenchOptions = {}): Promise<Row[]> {
  const rounds = o.rounds ?? 3;
  const bytes = (o.mib ?? 512) * CHUNK;
  const chunk = randomBytes(CHUNK);
  const ceph = await cephEndpoint();
  const root = trackFolder(mkdtempSync(path.join(os.tmpdir(), 'oreg-bench-fs-')));
  const s3 = new S3Driver({ endpoint: ceph.endpoint, bucket: await newBucket(ceph.endpoint), credentials: S3_CREDENTIALS });
  const drivers: Record<'s3' | 'fs', Driver> = { s3, fs: new FsDriver(root) };
  const results = { push: { s3: [] as number[], fs: [] as number[] }, get: { s3: [] as number[], fs: [] as number[] } };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const name of ['fs', 's3'] as const) {
        const d = drivers[name];
        const key = `blobs/sha256-${r}`;
        results.push[name].push((await timed(() => push(d, key, bytes, chunk))).mbps);
        const srv = await serve(d);
        try {
          results.get[name].push((await timed(() => curlGet(srv.url + key, { status: 200, bytes }))).mbps);
        } finally {
          srv.close();
        }
        await d.delete(key);
      }
    }
  } finally {
    s3.destroy();
    removeFolder(root);
    await ceph.stop();
  }
  return [
    row(`push ${o.mib ?? 512} MiB (streamed write, commit)`, results.push.s3, results.push.fs, 'report (S3 / fs)'),
    row(`blob GET ${o.mib ?? 512} MiB through the driver over HTTP`, results.get.s3, results.get.fs, 'report (S3 / fs)'),
  ];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  installCleanupHandlers();
  const args = process.argv.slice(2);
  const num = (flag: string): number | undefined => (args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : undefined);
  const { printTable } = await import('./lib/table.js');
  printTable('s3: Ceph RGW (one node, memstore) through the S3 driver vs the fs driver', await benchS3({ rounds: num('--rounds'), mib: num('--mib') }));
}
