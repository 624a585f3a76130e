// Abuse benchmark (issue 12): manifest GET latency (p50/p99, one keep-alive client, wrk) unloaded,
// under a flood of stalled connections, and under wrong-password floods, as ratios to unloaded.
// Loopback only; every flood is bounded in connections and in time.
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { authStoreAt } from '../src/auth/decisions.js';
import { hashPassword } from '../src/auth/passwords.js';
import { FsDriver } from '../src/storage/fs.js';
import { makeFixture } from './lib/fixture.js';
import { wrkLatency } from './lib/load.js';
import { freePort, installCleanupHandlers, removeFolder, run, startDaemon, stop, waitReady } from './lib/procs.js';
import type { Row } from './lib/table.js';

const MAIN_JS = fileURLToPath(new URL('../src/main.js', import.meta.url));

interface Flood {
  stop(): Promise<void>;
  /** What the flood saw, e.g. "401: 120, 503: 900". */
  summary(): string;
}

function count(seen: Map<string, number>, k: string): void {
  seen.set(k, (seen.get(k) ?? 0) + 1);
}
const show = (seen: Map<string, number>) => [...seen].sort().map(([k, v]) => `${k}: ${v}`).join(', ');

/** `perAddress` connections from each of `addresses` that send headers (and Content-Length: 100) and then nothing; reopened when closed. */
function stalledFlood(port: number, addresses: string[], perAddress: number): Flood {
  let stopped = false;
  const seen = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const one = (localAddress: string, i: number) => {
    if (stopped) return;
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    sockets.add(s);
    s.on('error', () => {});
    s.once('connect', () => {
      // Half slow headers, half a body that never comes.
      s.write(i % 2 ? 'GET /healthz HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\n' : 'GET /healthz HTTP/1.1\r\nHost: b\r\n');
    });
    let first = '';
    s.on('data', (d: Buffer) => { if (!first) first = d.toString('latin1', 0, 12); });
    s.once('close', () => {
      sockets.delete(s);
      count(seen, first ? first.slice(9, 12) : 'closed');
      if (!stopped) setTimeout(() => one(localAddress, i), 50);
    });
  };
  for (const a of addresses) for (let i = 0; i < perAddress; i++) one(a, i);
  return {
    summary: () => `held ${sockets.size} at the end; answers to closed ones: ${show(seen) || 'none'}`,
    stop: async () => {
      stopped = true;
      for (const s of sockets) s.destroy();
    },
  };
}

/** `loops` clients asking for tokens with wrong passwords, each from its address, as fast as answered. */
function passwordFlood(port: number, loops: Array<{ address: string; user: () => string }>): Flood {
  let stopped = false;
  const seen = new Map<string, number>();
  const ask = (address: string, user: string) => new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/v2/token?service=bench', localAddress: address, agent: false, timeout: 60_000,
      headers: { Authorization: `Basic ${Buffer.from(`${user}:wrong-${Math.random()}`).toString('base64')}` } }, (res) => {
      count(seen, String(res.statusCode));
      res.resume();
      res.once('end', resolve);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => { count(seen, 'error'); resolve(); });
  });
  const running = loops.map(async ({ address, user }) => {
    while (!stopped) await ask(address, user());
  });
  return { summary: () => show(seen), stop: async () => { stopped = true; await Promise.all(running); } };
}

export async function benchAbuse(opts: { seconds?: number; log?: (s: string) => void } = {}): Promise<Row[]> {
  const seconds = opts.seconds ?? 8;
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  await run('wrk', ['-v']).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') throw new Error('wrk is not installed: apt-get install wrk'); });
  installCleanupHandlers();
  const fx = makeFixture(1 << 20);
  const rows: Row[] = [];
  let child: ReturnType<typeof startDaemon>['child'] | undefined;
  try {
    await (await authStoreAt(new FsDriver(fx.dir))).putUser({ name: 'alice', password: await hashPassword('right'), grants: [{ namespace: 'team', actions: ['pull', 'push'] }] });
    const port = await freePort();
    const d = startDaemon(process.execPath, [MAIN_JS, 'serve', '--data', fx.dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'error']);
    child = d.child;
    const base = `http://127.0.0.1:${port}`;
    await waitReady(`${base}/healthz`, d.child, d.output);
    const url = base + fx.manifestPath;
    await wrkLatency(url, 1, 1); // warm-up
    const unloaded = await wrkLatency(url, 1, seconds);
    log(`abuse: unloaded p50 ${unloaded.p50.toFixed(3)} ms, p99 ${unloaded.p99.toFixed(3)} ms`);
    const addrs = (n: number, third: number) => Array.from({ length: n }, (_, i) => `127.0.${third}.${i + 2}`);
    const phases: Array<[string, () => Flood, string]> = [
      ['stalled connections', () => stalledFlood(port, addrs(12, 1), 250),
        '12 addresses x 250 connections (over the 200 per address and 2000 in total), headers or body never finished, reopened when closed'],
      ['wrong passwords, one user', () => passwordFlood(port, addrs(64, 2).map((address) => ({ address, user: () => 'alice' }))),
        '64 loops of alice:wrong at /v2/token (the attack of the issue), 64 addresses'],
      ['wrong passwords, many names',
        () => passwordFlood(port, addrs(64, 3).map((address, i) => ({ address, user: () => `guess${i}-${Math.floor(Math.random() * 1e6)}` }))),
        '64 loops of unknown names (each costs a dummy scrypt), 64 addresses'],
    ];
    for (const [name, start, what] of phases) {
      const flood = start();
      await new Promise((r) => setTimeout(r, 1000)); // let it build up
      const m = await wrkLatency(url, 1, seconds);
      await flood.stop();
      log(`abuse: ${name}: p50 ${m.p50.toFixed(3)} ms, p99 ${m.p99.toFixed(3)} ms, ${m.non2xx} non-2xx; flood: ${flood.summary()}`);
      for (const p of ['p50', 'p99'] as const) {
        rows.push({ metric: `manifest GET ${p}, ${name}`, unit: 'ms', ours: m[p], baseline: unloaded[p], baselineName: 'unloaded', ratio: m[p] / unloaded[p], goal: 'info',
          note: p === 'p50' ? `${what}; ${m.requests} GETs, ${m.non2xx} not 2xx; flood saw ${flood.summary()}` : undefined });
      }
      await new Promise((r) => setTimeout(r, 2000)); // let the server settle between floods
    }
    rows.unshift(
      { metric: 'manifest GET p50, unloaded', unit: 'ms', ours: unloaded.p50, goal: 'info', note: `wrk -t1 -c1 -d${seconds}s --latency (one keep-alive client), ${unloaded.requests} GETs` },
      { metric: 'manifest GET p99, unloaded', unit: 'ms', ours: unloaded.p99, goal: 'info' },
    );
    return rows;
  } finally {
    if (child) await stop(child);
    removeFolder(path.resolve(fx.dir));
  }
}
