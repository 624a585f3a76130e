// Core benchmark (issues 2 and 18): this server against Caddy set up as the older Caddy+ollama registry,
// alternating rounds on the same 1 GiB blob: a plain GET, ollama's ranged parts at once, 16 equal ranges
// of the first half, manifest load; then peak RSS of fresh processes under 32 full pulls plus manifest
// load. Server CPU per GiB (from /proc) is printed next to every transfer: on a busy machine it moves
// much less than wall-clock rates. See bench/lib/load.ts for the clients used.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { caddyfile, makeFixture, warmPageCache, type Fixture } from './lib/fixture.js';
import { concurrentFull, cpuSecondsOf, curlGet, equalParts, ollamaParts, partsDownload, peakRssDuring, timed, withBackground, wrkRate, type Transfer } from './lib/load.js';
import { freePort, installCleanupHandlers, removeFolder, run, shebangFlags, startDaemon, stop, waitReady } from './lib/procs.js';
import { median, type Row } from './lib/table.js';

export interface CoreOptions {
  /** Rounds per server (each round: plain GET, ranged download, manifest load). Default 3. */
  rounds?: number;
  /** Seconds of manifest load per round and server. Default 5. */
  manifestSeconds?: number;
  /** Connections for the manifest load. Default 64. */
  connections?: number;
  /** Blob size in bytes. Default 1 GiB. */
  blobBytes?: number;
  /** Concurrent full downloads, next to manifest load, while peak RSS is measured. Default 32. */
  rssDownloads?: number;
  /** The server's compiled CLI (default: this checkout's dist/src/main.js), to compare builds. */
  serverMain?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

interface Target {
  name: 'ours' | 'caddy';
  base: string;
  child: ChildProcess;
}

const MAIN_JS = fileURLToPath(new URL('../src/main.js', import.meta.url));
const MiB = 1 << 20;

async function startOurs(fx: Fixture, main: string): Promise<Target> {
  const port = await freePort();
  const { child, output } = startDaemon(process.execPath, [...shebangFlags(main), main, 'serve', '--data', fx.dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn']);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/v2/`, child, output);
  return { name: 'ours', base, child };
}

async function startCaddy(fx: Fixture, state: string): Promise<Target> {
  const port = await freePort();
  const file = path.join(state, `Caddyfile-${port}`);
  writeFileSync(file, caddyfile(fx.dir, port));
  // Caddy's own state (autosave.json, certificate storage) goes to the temp folder, not $HOME.
  const env = { ...process.env, HOME: state, XDG_CONFIG_HOME: state, XDG_DATA_HOME: state };
  const { child, output } = startDaemon('caddy', ['run', '--config', file, '--adapter', 'caddyfile'], env);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}${fx.manifestPath}`, child, output);
  return { name: 'caddy', base, child };
}

async function requireTools(): Promise<void> {
  const need: Array<[string, string[], string]> = [['caddy', ['version'], 'caddy'], ['curl', ['--version'], 'curl'], ['wrk', ['-v'], 'wrk']];
  for (const [cmd, args, pkg] of need) {
    try {
      await run(cmd, args);
    } catch (e) {
      // wrk -v prints its version and exits 1; only a missing binary is fatal.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${cmd} is not installed: apt-get install ${pkg}`, { cause: e });
    }
  }
}

export async function benchCore(opts: CoreOptions = {}): Promise<Row[]> {
  const rounds = opts.rounds ?? 3;
  const manifestSeconds = opts.manifestSeconds ?? 5;
  const connections = opts.connections ?? 64;
  const size = opts.blobBytes ?? 1 << 30;
  const rssDownloads = opts.rssDownloads ?? 32;
  const main = opts.serverMain ?? MAIN_JS;
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  await requireTools();
  installCleanupHandlers();

  log(`core: writing a ${(size / MiB).toFixed(0)} MiB random blob`);
  const fx = makeFixture(size);
  const state = path.join(fx.dir, '.bench');
  const running: Target[] = [];
  try {
    await run('mkdir', ['-p', state]);
    const ours = await startOurs(fx, main);
    running.push(ours);
    const caddy = await startCaddy(fx, state);
    running.push(caddy);
    const targets = [ours, caddy];

    log('core: warming up (page cache, one GET and 1 s of manifest load per server)');
    warmPageCache(path.join(fx.dir, 'blobs', `sha256-${fx.digest.slice(7)}`));
    for (const t of targets) {
      await curlGet(t.base + fx.blobPath, { status: 200, bytes: size });
      await wrkRate(t.base + fx.manifestPath, connections, 1);
    }

    type Series = Record<Target['name'], number[]>;
    const series = (): Series => ({ ours: [], caddy: [] });
    const plain = series();
    const ranged = series();
    const equal = series();
    const manifests = series();
    const cpu = { plain: series(), ranged: series(), equal: series() };
    const parts = ollamaParts(size);
    const halves = equalParts(Math.floor(size / 2), 16);
    // One transfer, its rate and the server's CPU seconds per GiB.
    const measure = async (t: Target, fn: () => Promise<number>, rate: number[], perGiB: number[]): Promise<Transfer> => {
      const cpu0 = cpuSecondsOf(t.child.pid!);
      const x = await timed(fn);
      perGiB.push((cpuSecondsOf(t.child.pid!) - cpu0) / (x.bytes / 2 ** 30));
      rate.push(x.mbps);
      return x;
    };
    for (let r = 1; r <= rounds; r++) {
      for (const t of targets) {
        const url = t.base + fx.blobPath;
        const p = await measure(t, () => curlGet(url, { status: 200, bytes: size }), plain[t.name], cpu.plain[t.name]);
        const g = await measure(t, () => partsDownload(url, parts), ranged[t.name], cpu.ranged[t.name]);
        const e = await measure(t, () => partsDownload(url, halves), equal[t.name], cpu.equal[t.name]);
        const m = await wrkRate(t.base + fx.manifestPath, connections, manifestSeconds);
        manifests[t.name].push(m);
        log(`core: round ${r}/${rounds} ${t.name.padEnd(5)} plain ${p.mbps.toFixed(0)} MB/s, ${parts.length} ranges ${g.mbps.toFixed(0)} MB/s, ` +
          `16 equal ranges ${e.mbps.toFixed(0)} MB/s (CPU ${cpu.equal[t.name].at(-1)!.toFixed(2)} s/GiB), manifests ${m.toFixed(0)}/s`);
      }
    }

    // Peak RSS on fresh processes, so that VmHWM covers this load only: full pulls while wrk loads manifests.
    const peaks: Record<string, number> = {};
    for (const name of ['ours', 'caddy'] as const) {
      const old = running.find((t) => t.name === name)!;
      await stop(old.child);
      running.splice(running.indexOf(old), 1);
      const fresh = name === 'ours' ? await startOurs(fx, main) : await startCaddy(fx, state);
      running.push(fresh);
      const pulls = () => concurrentFull(fresh.base + fx.blobPath, size, rssDownloads);
      const load = () => wrkRate(fresh.base + fx.manifestPath, connections, 2, 2, 30);
      const { result, hwm, sampledPeak } = await peakRssDuring(fresh.child.pid!, () => withBackground(pulls, load));
      peaks[name] = Math.max(hwm, sampledPeak);
      log(`core: ${rssDownloads} concurrent full downloads from ${name} with manifest load (${result.bgRuns} wrk runs${result.bgErrors.length ? `, errors: ${result.bgErrors[0]}` : ''}): ` +
        `${(result.result / 2 ** 30).toFixed(0)} GiB, peak RSS ${(peaks[name]! / MiB).toFixed(1)} MiB`);
    }

    const row = (metric: string, unit: string, o: number[], c: number[], goal: number, note?: string): Row => {
      const ratio = median(o) / median(c);
      return { metric, unit, ours: median(o), oursRuns: o, baseline: median(c), baselineRuns: c, baselineName: 'caddy', ratio, goal: `>= ${goal.toFixed(1)}x`, pass: ratio >= goal, note };
    };
    const rssMiB = peaks.ours! / MiB;
    const cpuRow = (what: string, c: Series): Row => ({
      metric: `server CPU per GiB (${what})`, unit: 's', ours: median(c.ours), oursRuns: c.ours, baseline: median(c.caddy), baselineRuns: c.caddy, baselineName: 'caddy',
      ratio: median(c.ours) / median(c.caddy), goal: 'info', note: 'user+system CPU of the server process per GiB served (lower is better)',
    });
    return [
      row('plain GET, 1 GiB', 'MB/s', plain.ours, plain.caddy, 1.0, 'one curl -o /dev/null, no Range'),
      row(`ollama's ranged parts at once (${parts.length} parts)`, 'MB/s', ranged.ours, ranged.caddy, 1.1,
        `part layout of protocol §3.2 (${parts.length - 1} x ${parts[0]![1] + 1} B + ${parts.at(-1)![1] - parts.at(-1)![0] + 1} B), all at once, one curl and connection each`),
      row(`16 equal ranges, ${(halves.at(-1)![1] + 1) / MiB} MiB`, 'MB/s', equal.ours, equal.caddy, 1.1, 'the first half of the blob in 16 ranges at once, curl'),
      row(`manifests, ${connections} conns`, 'req/s', manifests.ours, manifests.caddy, 1.0, `wrk -t2 -c${connections} -d${manifestSeconds}s, keep-alive`),
      {
        metric: `peak RSS, ${rssDownloads} full GETs + manifest load`, unit: 'MiB', ours: rssMiB, baseline: peaks.caddy! / MiB, baselineName: 'caddy',
        goal: '<= 120 MiB', pass: rssMiB <= 120, note: `fresh process each; wrk -c${connections} on the manifest meanwhile; max of VmHWM and VmRSS sampled every 20 ms (ratio not a goal)`,
      },
      cpuRow('plain GET', cpu.plain),
      cpuRow(`${parts.length} ollama parts`, cpu.ranged),
      cpuRow('16 equal ranges', cpu.equal),
    ];
  } finally {
    await Promise.all(running.map((t) => stop(t.child)));
    removeFolder(fx.dir);
  }
}
