// Load generators. Blob bytes are fetched with curl (-o /dev/null): on this machine it needs
// about a third of the CPU of a Node http client for the same GiB, and client and server share
// 2 cores. Manifest load comes from wrk (Debian package `wrk`), a C load generator.
import { readdirSync, readFileSync } from 'node:fs';
import { run } from './procs.js';

export interface Transfer {
  bytes: number;
  seconds: number;
  /** Decimal megabytes per second. */
  mbps: number;
}

/** One GET with curl; checks the status and the byte count. `range` is inclusive. */
export async function curlGet(url: string, expect: { status: number; bytes: number }, range?: [number, number]): Promise<number> {
  const args = ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', '--noproxy', '*'];
  if (range) args.push('-H', `Range: bytes=${range[0]}-${range[1]}`);
  const out = await run('curl', [...args, url]);
  const [code, size] = out.trim().split(' ').map(Number);
  if (code !== expect.status || size !== expect.bytes) {
    throw new Error(`GET ${url}${range ? ` (bytes=${range[0]}-${range[1]})` : ''}: got ${code} with ${size} bytes, expected ${expect.status} with ${expect.bytes}`);
  }
  return size;
}

export async function timed(fn: () => Promise<number>): Promise<Transfer> {
  const t0 = performance.now();
  const bytes = await fn();
  const seconds = (performance.now() - t0) / 1000;
  return { bytes, seconds, mbps: bytes / seconds / 1e6 };
}

/** ollama's part layout (protocol/ollama.md §3.2): inclusive [start, end] per part. */
export function ollamaParts(total: number): Array<[number, number]> {
  const size = Math.min(Math.max(Math.floor(total / 16), 100_000_000), 1_000_000_000);
  const parts: Array<[number, number]> = [];
  for (let off = 0; off < total; off += size) parts.push([off, Math.min(off + size, total) - 1]);
  return parts;
}

/** `n` equal inclusive ranges covering [0, total), the last one taking the remainder. */
export function equalParts(total: number, n: number): Array<[number, number]> {
  const size = Math.floor(total / n);
  return Array.from({ length: n }, (_, i) => [i * size, i === n - 1 ? total - 1 : (i + 1) * size - 1]);
}

/** The given parts, at most 16 at a time, each curl on its own connection (as Go opens one per part). */
export function partsDownload(url: string, parts: Array<[number, number]>): Promise<number> {
  const queue = [...parts];
  let bytes = 0;
  const worker = async () => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      const n = await curlGet(url, { status: 206, bytes: p[1] - p[0] + 1 }, p);
      bytes += n; // not `bytes += await …`: that reads `bytes` before the await and loses updates
    }
  };
  return Promise.all(Array.from({ length: Math.min(16, queue.length) }, worker)).then(() => bytes);
}

/** ollama's download of a whole blob: all of its parts (§3.2 layout), 16 at a time. */
export function rangedDownload(url: string, total: number): Promise<number> {
  return partsDownload(url, ollamaParts(total));
}

/**
 * Runs `bg` (e.g. a few seconds of wrk) again and again while `work` runs; `work`'s result and how many
 * `bg` runs finished. Background errors are collected, not fatal: they are load, not the measurement.
 */
export async function withBackground<T>(work: () => Promise<T>, bg: () => Promise<unknown>): Promise<{ result: T; bgRuns: number; bgErrors: string[] }> {
  let done = false;
  let bgRuns = 0;
  const bgErrors: string[] = [];
  const loop = (async () => {
    while (!done) {
      try {
        await bg();
        bgRuns++;
      } catch (e) {
        bgErrors.push((e as Error).message);
      }
    }
  })();
  try {
    return { result: await work(), bgRuns, bgErrors };
  } finally {
    done = true;
    await loop;
  }
}

/** `n` concurrent full GETs. */
export async function concurrentFull(url: string, total: number, n: number): Promise<number> {
  const got = await Promise.all(Array.from({ length: n }, () => curlGet(url, { status: 200, bytes: total })));
  return got.reduce((a, b) => a + b, 0);
}

/**
 * wrk at `connections` connections for `seconds`; requests/s, failing on any error or non-2xx. `timeoutSeconds` (wrk's
 * default 2) is raised where the rate is only background load, e.g. while peak memory is measured.
 */
export async function wrkRate(url: string, connections: number, seconds: number, threads = 2, timeoutSeconds = 2): Promise<number> {
  const out = await run('wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, `--timeout`, `${timeoutSeconds}s`, '--latency', url]);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rate) throw new Error(`cannot read wrk output: ${out}`);
  const bad = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const errs = /Socket errors: (.*)/.exec(out);
  if (bad) throw new Error(`wrk ${url}: ${bad[1]} non-2xx responses`);
  if (errs && /(?:connect|read|write|timeout) [1-9]/.test(errs[1]!)) throw new Error(`wrk ${url}: socket errors: ${errs[1]}`);
  return Number(rate[1]);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/**
 * Latency percentiles of `connections` keep-alive clients for `seconds` (wrk --latency), in ms.
 * Non-2xx answers are counted, not fatal: the load around the measurement may cause them.
 */
export async function wrkLatency(url: string, connections: number, seconds: number): Promise<{ p50: number; p99: number; requests: number; non2xx: number }> {
  const out = await run('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', url]);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)$`, 'm').exec(out);
    if (!m) throw new Error(`cannot read wrk's ${p}% latency: ${out}`);
    return Number(m[1]) * UNIT_MS[m[2]!]!;
  };
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  return { p50: pct('50'), p99: pct('99'), requests, non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) };
}

/** Resident set of a process now and its peak so far, in bytes (Linux /proc). */
export function memOf(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** CPU seconds (user+system) a process has used so far. */
export function cpuSecondsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** CPU seconds of a process's main thread and of its other threads (fs thread pool, V8's GC threads, workers), from /proc. */
export function threadCpu(pid: number | undefined): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : 'others';
      const f = st.slice(st.lastIndexOf(') ') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
    }
  } catch { /* gone */ }
  return out;
}

/** Sample VmRSS every `everyMs` while `work` runs; returns the sampled peak and the kernel's VmHWM. */
export async function peakRssDuring<T>(pid: number, work: () => Promise<T>, everyMs = 20): Promise<{ result: T; sampledPeak: number; hwm: number }> {
  let sampledPeak = 0;
  const timer = setInterval(() => {
    try {
      sampledPeak = Math.max(sampledPeak, memOf(pid).rss);
    } catch {
      // the process is gone; the work will fail and say why
    }
  }, everyMs);
  try {
    const result = await work();
    const { rss, hwm } = memOf(pid);
    return { result, sampledPeak: Math.max(sampledPeak, rss), hwm };
  } finally {
    clearInterval(timer);
  }
}
