// mirror: the same 1 GiB blob over the transparent mirror's TLS paths (proxy mode through
// CONNECT, DNS mode on its own port) against plain HTTP to the registry by its own name.
// One server, one data folder; rounds alternate between the paths.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeFixture, warmPageCache } from './lib/fixture.js';
import { freePort, installCleanupHandlers, run, startDaemon, stop, waitReady } from './lib/procs.js';
import { median, type Row } from './lib/table.js';

const MAIN_JS = fileURLToPath(new URL('../src/main.js', import.meta.url));
const HOST = 'registry.ollama.ai';

async function timedCurl(args: string[], bytes: number): Promise<number> {
  const t0 = performance.now();
  const out = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', ...args]);
  const s = (performance.now() - t0) / 1000;
  const [code, size] = out.trim().split(' ').map(Number);
  if (code !== 200 || size !== bytes) throw new Error(`curl ${args.join(' ')}: ${code} with ${size} bytes`);
  return bytes / s / 1e6;
}

export async function benchMirror(opts: { rounds?: number; blobBytes?: number } = {}): Promise<Row[]> {
  const rounds = opts.rounds ?? 3;
  const size = opts.blobBytes ?? 1 << 30;
  installCleanupHandlers();
  const fx = makeFixture(size);
  const mirrorDir = path.join(fx.dir, '.mirror');
  await run(process.execPath, [MAIN_JS, 'ca', 'init', '--dir', mirrorDir]);
  const [port, tlsPort] = [await freePort(), await freePort()];
  const { child, output } = startDaemon(process.execPath, [MAIN_JS, 'serve', '--data', fx.dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn',
    '--mirror', mirrorDir, '--mirror-listen', `127.0.0.1:${tlsPort}`]);
  try {
    await waitReady(`http://127.0.0.1:${port}/v2/`, child, output);
    warmPageCache(path.join(fx.dir, 'blobs', `sha256-${fx.digest.slice(7)}`));
    const ca = ['--cacert', path.join(mirrorDir, 'ca.pem')];
    const paths = {
      plain: ['--noproxy', '*', `http://127.0.0.1:${port}${fx.blobPath}`],
      proxy: [...ca, '--proxy', `http://127.0.0.1:${port}`, `https://${HOST}${fx.blobPath}`],
      dns: [...ca, '--noproxy', '*', '--resolve', `${HOST}:${tlsPort}:127.0.0.1`, `https://${HOST}:${tlsPort}${fx.blobPath}`],
    };
    const runs: Record<keyof typeof paths, number[]> = { plain: [], proxy: [], dns: [] };
    for (const k of Object.keys(paths) as Array<keyof typeof paths>) await timedCurl(paths[k], size); // warm-up
    for (let r = 0; r < rounds; r++) {
      for (const k of Object.keys(paths) as Array<keyof typeof paths>) runs[k].push(await timedCurl(paths[k], size));
    }
    const plain = median(runs.plain);
    const row = (metric: string, k: 'proxy' | 'dns', note: string): Row => ({
      metric, unit: 'MB/s', ours: median(runs[k]), oursRuns: runs[k], baseline: plain, baselineRuns: runs.plain, baselineName: 'plain HTTP',
      ratio: median(runs[k]) / plain, goal: 'report', note,
    });
    return [
      row('proxy mode (CONNECT + TLS), 1 GiB GET', 'proxy', 'curl --proxy, TLS 1.3 inside the tunnel, vs plain HTTP GET of the same blob'),
      row('DNS mode (TLS on its own port), 1 GiB GET', 'dns', 'curl --resolve registry.ollama.ai, vs plain HTTP GET'),
    ];
  } finally {
    await stop(child);
  }
}
