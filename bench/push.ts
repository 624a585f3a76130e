// Push benchmark (issue 4): pushing a model with a 1 GiB layer to this server with ollama's
// requests (its part layout: 11 sequential PATCHes of ≤100 MB with Content-Range, then the commit
// PUT, after the ed25519 token flow), against Debian's docker-registry (CNCF distribution 2.8)
// with the usual monolithic upload (POST, then one PUT ?digest with the whole blob). Both on
// loopback, rounds alternated, each round into an empty data folder. Throughput = pushed bytes /
// wall time.
//
// Two clients: a lean one (the same small Node client for both servers, so the servers are
// compared), and the full ollama client emulation of test/support (Go client behaviour, md5 of
// every part for the etag), which costs the client a lot more CPU on a small machine.
// Durability differs: this server fsyncs every blob before publishing it; distribution's
// filesystem driver does not fsync.
//
//   node dist/bench/push.js [--rounds N] [--mib N] [--only lean,emulated,distribution] [--server-main M] [--cpu-prof DIR]
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, createReadStream, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeModel, type MadeModel } from '../test/support/models.js';
import { makeOllamaKey, ollamaPush, OLLAMA_PARTS, signTokenRequest, type OllamaKey } from '../test/support/ollama-client.js';
import { goEncodeValues } from '../test/support/ollama-http.js';
import { layoutParts } from '../test/support/ollama-names.js';
import { sha256Rate } from './lib/ceilings.js';
import type { Row } from './lib/table.js';
import { freePort, shebangFlags } from './lib/procs.js';
import { threadCpu } from './lib/load.js';

/** The same shape as the rows of bench/lib/table.ts. */
export type { Row };

export interface PushBenchOptions {
  /** Rounds per server. Default 3. */
  rounds?: number;
  /** Size of the big layer. Default 1 GiB. */
  blobBytes?: number;
  log?: (line: string) => void;
  /** Another build of the server to measure (its dist/src/main.js). */
  serverMain?: string;
  /** Measure only these (default all). */
  only?: Array<'lean' | 'emulated' | 'distribution'>;
  /** Folder for the server's `node --cpu-prof` profiles. */
  cpuProf?: string;
}

const MAIN_JS = fileURLToPath(new URL('../src/main.js', import.meta.url));
const HOST = '127.0.0.1';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}


function daemon(cmd: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-4000); });
  child.stderr!.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-4000); });
  return { child, output: () => out };
}

function status(url: string): Promise<number> {
  return new Promise((resolve) => {
    http.get(url, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', () => resolve(0));
  });
}

async function waitReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited: ${output()}`);
    const s = await status(url);
    if (s === 200 || s === 401) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not ready: ${output()}`);
}

async function stopDaemon(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** CPU seconds (user + system) a process used so far, from /proc (Linux). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

function cpuTotal(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1e6;
}

function cli(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [MAIN_JS, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args.join(' ')}: ${err}`))));
  });
}

/**
 * One push to this server with the ollama client emulation; seconds. ollama finds the model under
 * manifests/<host:port>/…, and the port is known only here: the manifest is copied there first.
 */
interface Run {
  seconds: number;
  /** CPU seconds the server process used during the push. */
  serverCpu: number;
  /** CPU seconds this (client) process used during the push. */
  clientCpu: number;
  /** The server's CPU seconds: its main thread, and all others. */
  threads?: Map<string, number>;
}

/**
 * Wall GB/s of writing `size` bytes to a new file in `dir` and fsyncing it, with ordinary writes
 * and with O_DIRECT (8 MiB writes from page-aligned memory, as the server's uploads use): the
 * disk's ceiling for a push.
 */
function diskWrite(dir: string, size: number): { buffered: number; direct: number } {
  const file = path.join(dir, 'disk-ceiling');
  const buf = Buffer.from(new WebAssembly.Memory({ initial: 128 }).buffer).fill(0x5a);
  const once = (flags: number): number => {
    const fd = openSync(file, flags, 0o644);
    const t0 = process.hrtime.bigint();
    try {
      for (let at = 0; at < size; at += buf.length) writeSync(fd, buf, 0, Math.min(buf.length, size - at), at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
      rmSync(file, { force: true });
    }
    return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9;
  };
  const create = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;
  return { buffered: once(create), direct: size % 4096 === 0 ? once(create | constants.O_DIRECT) : NaN };
}

async function pushOurs(fx: { clientDir: string; key: OllamaKey; model: MadeModel }, work: string, lean: boolean, o: PushBenchOptions): Promise<Run> {
  const data = path.join(work, 'ours');
  await cli(['keys', 'add', fx.key.publicKeyLine, '--namespace', 'bench', '--data', data]);
  const port = await freePort();
  const dst = path.join(fx.clientDir, 'manifests', `${HOST}:${port}`, 'bench', 'model', 'latest');
  await mkdir(path.dirname(dst), { recursive: true });
  await copyFile(path.join(fx.clientDir, 'manifests', 'bench', 'bench', 'model', 'latest'), dst);
  const prof = o.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProf] : [];
  const main = o.serverMain ?? MAIN_JS;
  const { child, output } = daemon(process.execPath, [...prof, ...shebangFlags(main), main, 'serve', '--data', data, '--listen', `${HOST}:${port}`, '--log-level', 'warn']);
  try {
    await waitReady(`http://${HOST}:${port}/v2/`, child, output);
    const c0 = cpuSeconds(child.pid);
    const th0 = threadCpu(child.pid);
    const u0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    if (lean) await leanPush(port, fx, 'parts', fx.key);
    else await ollamaPush(`${HOST}:${port}/bench/model:latest`, { modelsDir: fx.clientDir, key: fx.key, partSize: OLLAMA_PARTS });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const threads = threadCpu(child.pid);
    for (const [name, s] of th0) threads.set(name, (threads.get(name) ?? 0) - s);
    return { seconds, serverCpu: cpuSeconds(child.pid) - c0, clientCpu: cpuTotal(process.cpuUsage(u0)), threads };
  } finally {
    await stopDaemon(child);
    await rm(data, { recursive: true, force: true });
    await rm(path.join(fx.clientDir, 'manifests', `${HOST}:${port}`), { recursive: true, force: true });
  }
}

function send(
  port: number, method: string, target: string, body?: { file: string; start?: number; end?: number } | Buffer, headers: Record<string, string | number> = {},
): Promise<{ status: number; location?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, method, path: target, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, text }));
    });
    req.on('error', reject);
    if (!body) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else createReadStream(body.file, { highWaterMark: 1 << 20, start: body.start, end: body.end }).pipe(req);
  });
}

/** One push to docker-registry: per blob POST + monolithic PUT, then the manifest; seconds. */
async function pushDistribution(fx: { clientDir: string; model: MadeModel }, work: string): Promise<Run> {
  const root = path.join(work, 'distribution');
  const port = await freePort();
  const config = path.join(work, `distribution-${port}.yml`);
  await writeFile(config, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${root}\nhttp:\n  addr: ${HOST}:${port}\n`);
  const { child, output } = daemon('docker-registry', ['serve', config]);
  try {
    await waitReady(`http://${HOST}:${port}/v2/`, child, output);
    const c0 = cpuSeconds(child.pid);
    const u0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await leanPush(port, fx, 'monolithic');
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, serverCpu: cpuSeconds(child.pid) - c0, clientCpu: cpuTotal(process.cpuUsage(u0)) };
  } finally {
    await stopDaemon(child);
    await rm(root, { recursive: true, force: true });
    await rm(config, { force: true });
  }
}

/**
 * A small client: per blob POST, then ollama's PATCH parts (Content-Range S-E, following each
 * Location) and the commit PUT, or one monolithic PUT; then the manifest. With a key, it first
 * gets a push token the way ollama does (signed GET of the token URL).
 */
async function leanPush(port: number, fx: { clientDir: string; model: MadeModel }, mode: 'parts' | 'monolithic', key?: OllamaKey): Promise<void> {
  const h: Record<string, string> = {};
  if (key) {
    const q = goEncodeValues([
      ['nonce', Math.random().toString(36).slice(2)], ['scope', 'repository:bench/model:pull,push'], ['service', `${HOST}:${port}`], ['ts', String(Math.floor(Date.now() / 1000))],
    ]);
    const t = await send(port, 'GET', `/v2/token?${q}`, undefined, { Authorization: signTokenRequest(key, `http://${HOST}:${port}/v2/token?${q}`) });
    if (t.status !== 200) throw new Error(`token: ${t.status} ${t.text}`);
    h.Authorization = `Bearer ${(JSON.parse(t.text) as { token: string }).token}`;
  }
  const target = (loc: string) => {
    const u = new URL(loc, `http://${HOST}:${port}`);
    return u.pathname + u.search;
  };
  for (const b of fx.model.blobs) {
    const file = path.join(fx.clientDir, 'blobs', `sha256-${b.digest.slice(7)}`);
    const post = await send(port, 'POST', '/v2/bench/model/blobs/uploads/', Buffer.alloc(0), { ...h, 'Content-Length': 0 });
    if (post.status !== 202 || !post.location) throw new Error(`POST: ${post.status} ${post.text}`);
    let loc = post.location;
    let body: { file: string } | undefined = { file };
    let length = b.size;
    if (mode === 'parts') {
      for (const p of layoutParts(b.size, OLLAMA_PARTS)) {
        const end = p.offset + p.size - 1;
        const r = await send(port, 'PATCH', target(loc), { file, start: p.offset, end },
          { ...h, 'Content-Type': 'application/octet-stream', 'Content-Length': p.size, 'Content-Range': `${p.offset}-${end}` });
        if (r.status !== 202 || !r.location) throw new Error(`PATCH: ${r.status} ${r.text}`);
        loc = r.location;
      }
      body = undefined;
      length = 0;
    }
    const u = new URL(loc, `http://${HOST}:${port}`);
    u.searchParams.set('digest', b.digest);
    const put = await send(port, 'PUT', u.pathname + u.search, body ?? Buffer.alloc(0), { ...h, 'Content-Type': 'application/octet-stream', 'Content-Length': length });
    if (put.status !== 201) throw new Error(`PUT: ${put.status} ${put.text}`);
  }
  const m = await send(port, 'PUT', '/v2/bench/model/manifests/latest', fx.model.manifestBytes,
    { ...h, 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json', 'Content-Length': fx.model.manifestBytes.length });
  if (m.status !== 201) throw new Error(`manifest PUT: ${m.status} ${m.text}`);
}

export async function benchPush(opts: PushBenchOptions = {}): Promise<Row[]> {
  const rounds = opts.rounds ?? 3;
  const size = opts.blobBytes ?? 1 << 30;
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const work = await mkdtemp(path.join(os.tmpdir(), 'oreg-bench-push-'));
  try {
    const clientDir = path.join(work, 'client');
    const key = makeOllamaKey();
    log(`push bench: making a model with a ${size}-byte layer`);
    const model = await makeModel(clientDir, {
      host: 'bench', namespace: 'bench', model: 'model', tag: 'latest',
      layers: [
        { mediaType: 'application/vnd.ollama.image.model', size, seed: 'bench-weights' },
        { mediaType: 'application/vnd.ollama.image.params', content: '{"temperature":0.7}' },
      ],
    });
    const bytes = model.blobs.reduce((n, b) => n + b.size, 0);
    // The client reads the layer from the page cache in both cases.
    for (const b of model.blobs) await stat(path.join(clientDir, 'blobs', `sha256-${b.digest.slice(7)}`));
    const want = (k: 'lean' | 'emulated' | 'distribution') => !opts.only || opts.only.includes(k);
    const lean: Run[] = [];
    const emulated: Run[] = [];
    const theirs: Run[] = [];
    const disk: Array<{ buffered: number; direct: number }> = [];
    const sha: number[] = [];
    const gbps = (r: Run) => bytes / r.seconds / 1e9;
    const cpuPerGiB = (r: Run) => r.serverCpu / (bytes / (1 << 30));
    const fix = (x: number | undefined, d = 3) => (x === undefined ? '-' : x.toFixed(d));
    for (let i = 0; i < rounds; i++) {
      const l = want('lean') ? await pushOurs({ clientDir, key, model }, work, true, opts) : undefined;
      const d = want('distribution') ? await pushDistribution({ clientDir, model }, work) : undefined;
      const e = want('emulated') ? await pushOurs({ clientDir, key, model }, work, false, opts) : undefined;
      disk.push(diskWrite(work, size));
      sha.push(await sha256Rate());
      if (l) lean.push(l);
      if (d) theirs.push(d);
      if (e) emulated.push(e);
      log(`  round ${i + 1}: ours ${fix(l && gbps(l))} GB/s, ${fix(l && cpuPerGiB(l), 2)} CPU s/GiB, client ${fix(l && l.clientCpu, 2)} CPU s (lean client); ` +
        `${fix(e && gbps(e))} GB/s, ${fix(e && cpuPerGiB(e), 2)} CPU s/GiB (ollama emulation); docker-registry ${fix(d && gbps(d))} GB/s, ${fix(d && cpuPerGiB(d), 2)} CPU s/GiB; ` +
        `disk ${disk[i]!.buffered.toFixed(3)} GB/s buffered, ${disk[i]!.direct.toFixed(3)} direct (+fsync); sha256 ${sha[i]!.toFixed(3)} GB/s; ` +
        `${l?.threads ? `server threads ${[...l.threads].filter(([, c]) => c >= 0.05).map(([n, c]) => `${n} ${c.toFixed(2)}`).join(', ')}; ` : ''}load ${os.loadavg()[0]!.toFixed(1)}`);
    }
    const gib = (size / (1 << 30)).toFixed(2);
    const theirRate = theirs.map(gbps);
    const t = theirs.length ? median(theirRate) : NaN;
    // The disk's ceiling: the faster way of writing, per round.
    const diskRates = disk.map((d) => Math.max(d.buffered, d.direct || 0));
    const diskRate = median(diskRates);
    // Every blob is fsynced before it is published: the disk's own fsync'd write speed bounds a push.
    const goalNote = t * 5 > diskRate ? `; 5x docker-registry = ${(t * 5).toFixed(2)} GB/s is above this disk's fsync'd write speed (${diskRate.toFixed(2)} GB/s)` : '';
    const row = (metric: string, runs: Run[], note: string): Row => {
      const rates = runs.map(gbps);
      return {
        metric, unit: 'GB/s', ours: median(rates), oursRuns: rates, baseline: t, baselineRuns: theirRate, baselineName: 'docker-registry 2.8 (monolithic PUT)',
        ratio: median(rates) / t, goal: '>= 5x', pass: median(rates) / t >= 5, note: note + goalNote,
      };
    };
    const rows: Row[] = [];
    if (lean.length) rows.push(row(`push ${gib} GiB: ollama's PATCH parts, lean client`, lean, 'same client code for both servers; ours fsyncs each blob, distribution does not'));
    if (emulated.length) rows.push(row(`push ${gib} GiB: ollama client emulation`, emulated, 'the emulation md5-hashes every part for the etag, as ollama does'));
    if (lean.length) {
      const oursCpu = lean.map(cpuPerGiB);
      const theirCpu = theirs.map(cpuPerGiB);
      rows.push({
        metric: 'server CPU per GiB pushed (lean client)', unit: 'CPU s', ours: median(oursCpu), oursRuns: oursCpu,
        baseline: median(theirCpu), baselineRuns: theirCpu, baselineName: 'docker-registry 2.8', ratio: median(oursCpu) / median(theirCpu),
        goal: 'lower is better', note: 'user + system time of the server process, from /proc',
      });
      // The push can go no faster than the slower of writing (fsynced) and hashing on one core, each measured in this round.
      const rates = lean.map(gbps);
      const ceilings = disk.map((_, i) => Math.min(diskRates[i]!, sha[i]!));
      const ceiling = median(ceilings);
      rows.push({
        metric: `push ${gib} GiB (lean client) vs the slower of disk and sha256`, unit: 'GB/s', ours: median(rates), oursRuns: rates,
        baseline: ceiling, baselineRuns: ceilings, baselineName: `slower of: disk write ${gib} GiB + fsync (faster of buffered, O_DIRECT); openssl speed -evp sha256`,
        ratio: median(rates) / ceiling, goal: '>= 0.8x', pass: median(rates) / ceiling >= 0.8,
        note: `the push also receives over loopback, on the same ${os.cpus().length} cores as its client; medians: disk buffered ${median(disk.map((d) => d.buffered)).toFixed(3)}, ` +
          `O_DIRECT ${median(disk.map((d) => d.direct)).toFixed(3)}, sha256 ${median(sha).toFixed(3)} GB/s`,
      });
    }
    return rows;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : undefined;
  };
  const str = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const mib = opt('--mib');
  const only = str('--only')?.split(',') as PushBenchOptions['only'];
  const serverMain = str('--server-main');
  const cpuProf = str('--cpu-prof');
  const rows = await benchPush({
    rounds: opt('--rounds'), blobBytes: mib ? mib << 20 : undefined, only, serverMain: serverMain && path.resolve(serverMain), cpuProf: cpuProf && path.resolve(cpuProf),
  });
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  for (const r of rows) {
    console.log(`${r.metric}: ours ${r.ours.toFixed(3)} ${r.unit} [${r.oursRuns!.map((x) => x.toFixed(3)).join(', ')}], ` +
      `${r.baselineName} ${r.baseline?.toFixed(3)} ${r.unit} [${r.baselineRuns?.map((x) => x.toFixed(3)).join(', ')}], ` +
      `ratio ${r.ratio?.toFixed(2)}x (goal ${r.goal}: ${r.pass ? 'pass' : 'FAIL'}); ${r.note}`);
  }
}
