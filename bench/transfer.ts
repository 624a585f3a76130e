// Transfer-client benchmark (issue 14): a safetensors model of many small tensor blobs and a few
// big ones, pulled and pushed by the emulated ollama transfer client (test/support/ollama-
// transfer*.ts: a whole probe GET and then the download per blob, 64 blobs at once, 4 bodies in
// flight): straight from this server, cold and warm through the cache (upstream link bytes
// counted by bench/link.ts), and a push to an empty server.
//
//   export benchTransfer() returns rows for `npm run bench`.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeModel, type LayerSpec, type MadeModel } from '../test/support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush } from '../test/support/ollama-client.js';
import { freePort, removeFolder, run, startDaemon, stop, trackFolder, waitReady } from './lib/procs.js';
import type { Row } from './lib/table.js';

export interface TransferBenchOptions {
  /** Small tensor blobs (4 KiB…260 KiB each). Default 1000. */
  small?: number;
  /** Big tensor blobs of 64 MiB + 1 byte (resumable size). Default 4. */
  big?: number;
}

const MAIN_JS = fileURLToPath(new URL('../src/main.js', import.meta.url));
const LINK_JS = fileURLToPath(new URL('./link.js', import.meta.url));
const MB = 1e6;

async function startServer(data: string, extra: string[] = []): Promise<{ url: string; host: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const { child, output } = startDaemon(process.execPath, [MAIN_JS, 'serve', '--data', data, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', ...extra]);
  const url = `http://127.0.0.1:${port}`;
  try {
    // Not /v2/: it answers 401 once a key is registered.
    await waitReady(`${url}/readyz`, child, output);
  } catch (e) {
    await stop(child);
    throw e;
  }
  return { url, host: `127.0.0.1:${port}`, stop: () => stop(child) };
}

async function startLink(target: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const { child, output } = startDaemon(process.execPath, [LINK_JS, target, '0']);
  for (let i = 0; i < 200 && !/"url"/.test(output()); i++) await new Promise((r) => setTimeout(r, 50));
  const m = /"url":"([^"]+)"/.exec(output());
  if (!m) throw new Error(`link did not start: ${output()}`);
  return { url: m[1]!, stop: () => stop(child) };
}

const linkStats = async (link: string, what: 'stats' | 'reset') => (await (await fetch(`${link}/__link/${what}`)).json()) as { bytes: number };

function layers(o: Required<TransferBenchOptions>): LayerSpec[] {
  const out: LayerSpec[] = [];
  for (let i = 0; i < o.small; i++) out.push({ mediaType: 'application/vnd.ollama.image.tensor', size: 4096 + ((i * 7919) % (256 << 10)), name: `model.layers.${i}.weight` });
  for (let i = 0; i < o.big; i++) out.push({ mediaType: 'application/vnd.ollama.image.tensor', size: (64 << 20) + 1, seed: `big-${i}`, name: `model.embed.${i}.weight` });
  out.push({ mediaType: 'application/vnd.ollama.image.json', content: '{"architectures":["Qwen3ForCausalLM"]}', name: 'config.json' });
  return out;
}

async function timedPull(name: string): Promise<{ s: number; blobs: number }> {
  const modelsDir = trackFolder(mkdtempSync(path.join(os.tmpdir(), 'oreg-bench-transfer-client-')));
  const t0 = performance.now();
  const r = await ollamaPull(name, { modelsDir });
  const s = (performance.now() - t0) / 1000;
  removeFolder(modelsDir);
  return { s, blobs: r.downloaded.length };
}

export async function benchTransfer(opts: TransferBenchOptions = {}): Promise<Row[]> {
  const o = { small: opts.small ?? 1000, big: opts.big ?? 4 };
  const src = trackFolder(mkdtempSync(path.join(os.tmpdir(), 'oreg-bench-transfer-')));
  const cacheData = trackFolder(mkdtempSync(path.join(os.tmpdir(), 'oreg-bench-transfer-cache-')));
  const pushData = trackFolder(mkdtempSync(path.join(os.tmpdir(), 'oreg-bench-transfer-push-')));
  const m: MadeModel = await makeModel(src, { model: 'tensors', tag: 'bench', layers: layers(o), config: { model_format: 'safetensors', file_type: 'bf16' } });
  const bytes = m.blobs.reduce((n, b) => n + b.size, 0);
  const note = `${m.blobs.length} blobs, ${(bytes / MB).toFixed(0)} MB`;
  const rows: Row[] = [];
  const upstream = await startServer(src);
  const link = await startLink(upstream.url);
  const cache = await startServer(cacheData, ['--upstream', link.url]);
  try {
    const direct = await timedPull(`${upstream.host}/library/tensors:bench`);
    rows.push({ metric: 'pull straight from the server', unit: 'MB/s', ours: bytes / MB / direct.s, goal: 'info', note: `${note} in ${direct.s.toFixed(1)} s; the LAN carries 2x (probe + download)` });
    await linkStats(link.url, 'reset');
    const cold = await timedPull(`${cache.host}/library/tensors:bench`);
    const up = (await linkStats(link.url, 'stats')).bytes;
    rows.push({ metric: 'cold pull through the cache', unit: 'MB/s', ours: bytes / MB / cold.s, goal: 'info', note: `${cold.s.toFixed(1)} s` });
    rows.push({ metric: 'cold pull: upstream bytes / model bytes', unit: 'x', ours: up / bytes, goal: '= 1.00x', pass: up === bytes });
    const warm = await timedPull(`${cache.host}/library/tensors:bench`);
    rows.push({ metric: 'warm pull through the cache', unit: 'MB/s', ours: bytes / MB / warm.s, goal: 'info', note: `${warm.s.toFixed(1)} s` });
  } finally {
    await cache.stop();
    await link.stop();
    await upstream.stop();
  }
  // The push: the same blobs, under a name for an empty server that knows the client's key.
  const key = makeOllamaKey();
  await run(process.execPath, [MAIN_JS, 'keys', 'add', key.publicKeyLine, '--namespace', 'bench', '--data', pushData]);
  const target = await startServer(pushData);
  try {
    const dir = path.join(src, 'manifests', target.host, 'bench', 'tensors');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'bench'), m.manifestBytes);
    const t0 = performance.now();
    const r = await ollamaPush(`${target.host}/bench/tensors:bench`, { modelsDir: src, key });
    const s = (performance.now() - t0) / 1000;
    if (r.uploaded.length !== m.blobs.length) throw new Error(`pushed ${r.uploaded.length} of ${m.blobs.length} blobs`);
    rows.push({ metric: 'push to an empty server', unit: 'MB/s', ours: bytes / MB / s, goal: 'info', note: `${s.toFixed(1)} s, ${r.requests.length} requests` });
  } finally {
    await target.stop();
    for (const d of [src, cacheData, pushData]) removeFolder(d);
  }
  return rows;
}
