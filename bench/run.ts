// `npm run bench [-- NAME... ] [--rounds N] [--server-main dist/src/main.js] [--quick]`: runs the named benches (all by default)
// and prints one table per bench. Benches register below as name → function returning rows. `--quick` shrinks blobs and rounds
// (core 512 MiB x 2 rounds, cache 256 MiB unthrottled only, push 256 MiB x 1 round) so `core cache push` fits a few minutes.
import os from 'node:os';
import path from 'node:path';
import { benchAbuse } from './abuse.js';
import { benchCache } from './cache.js';
import { benchCore } from './core.js';
import { benchPush } from './push.js';
import { benchReplicas } from './replicas.js';
import { benchS3 } from './s3.js';
import { benchTransfer } from './transfer.js';
import { benchUi } from './ui.js';
import { benchMirror } from './mirror.js';
import { pageCacheWriteCost } from './lib/ceilings.js';
import { installCleanupHandlers } from './lib/procs.js';
import { printTable, type Row } from './lib/table.js';

interface Common {
  rounds?: number;
  /** Another build of the server to measure (its dist/src/main.js). */
  serverMain?: string;
  quick?: boolean;
}

const MiB = 1 << 20;

const BENCHES: Record<string, { title: string; run: (o: Common) => Promise<Row[]> }> = {
  core: { title: 'core: this server vs Caddy (older Caddy+ollama setup), 1 GiB blob', run: (o) => benchCore(o.quick ? { ...o, blobBytes: 512 * MiB, rounds: o.rounds ?? 2, manifestSeconds: 2 } : o) },
  cache: {
    title: 'cache: cold 1 GiB pull through the cache vs direct from the upstream; distribution 2.8 proxy as the peer',
    run: (o) => benchCache({ serverMain: o.serverMain, ...(o.quick ? { size: 256 * MiB, only: 'unthrottled' } : {}) }),
  },
  mirror: { title: 'mirror: 1 GiB through the transparent mirror (TLS) vs plain HTTP to the registry', run: (o) => benchMirror({ rounds: o.rounds }) },
  abuse: { title: 'abuse: manifest GET latency under floods (stalled connections, wrong passwords), as ratios to unloaded', run: () => benchAbuse() },
  push: {
    title: 'push: 1 GiB model to this server (ollama PATCH parts) vs docker-registry (monolithic PUT), and vs the slower of disk and sha256',
    run: (o) => benchPush({ rounds: o.rounds ?? (o.quick ? 1 : undefined), serverMain: o.serverMain, ...(o.quick ? { blobBytes: 256 * MiB, only: ['lean', 'distribution'] } : {}) }),
  },
  ui: { title: 'ui: the web catalog with 500 models in Chromium', run: (o) => benchUi({ rounds: o.rounds }) },
  s3: { title: 's3: a 512 MiB blob pushed and served through the S3 driver on Ceph RGW (one node, memstore) vs the fs driver', run: (o) => benchS3({ rounds: o.rounds }) },
  replicas: {
    title: 'replicas: 6 clients pull one 256 MiB blob through 1, 2 and 3 replicas on Ceph RGW, and a push to Ceph, vs one replica on the filesystem',
    run: (o) => benchReplicas({ rounds: o.rounds, ...(o.quick ? { mib: 64 } : {}) }),
  },
  transfer: { title: "transfer: a safetensors model (1000 small tensors + 4 x 64 MiB) by ollama's transfer client, emulated", run: () => benchTransfer() },
};

function usage(): never {
  console.error(`usage: npm run bench -- [${Object.keys(BENCHES).join('|')}]... [--rounds N] [--server-main dist/src/main.js] [--quick]`);
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const names: string[] = [];
  const common: Common = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--rounds') {
      common.rounds = Number(args[++i]);
      if (!Number.isInteger(common.rounds) || common.rounds < 1) usage();
    } else if (a === '--server-main') {
      common.serverMain = path.resolve(args[++i] ?? usage());
    } else if (a === '--quick') common.quick = true;
    else if (a === '-h' || a === '--help') usage();
    else if (BENCHES[a]) names.push(a);
    else {
      console.error(`unknown bench ${JSON.stringify(a)}`);
      usage();
    }
  }
  installCleanupHandlers();
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${load()}${common.serverMain ? `, server ${common.serverMain}` : ''}${common.quick ? ', quick mode' : ''}`);
  const pageCache = await pageCacheWriteCost().catch(() => NaN);
  console.log(`page cache: ${pageCache.toFixed(2)} CPU s/GiB to write a new file (about 0.3 on most machines; far above: a VM returning freed memory to its host, paid by fills and buffered writes)`);
  let failed = false;
  for (const name of names.length ? names : Object.keys(BENCHES)) {
    const b = BENCHES[name]!;
    const t0 = Date.now();
    try {
      const rows = await b.run(common);
      printTable(`${b.title} (${((Date.now() - t0) / 1000).toFixed(0)} s, load average after ${load()})`, rows);
    } catch (e) {
      failed = true;
      console.error(`bench ${name} failed: ${(e as Error).stack ?? e}`);
    }
  }
  process.exitCode = failed ? 1 : 0;
}

await main();
