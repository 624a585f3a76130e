// `verify`: re-hash every blob (on several cores), move corrupt ones to .ollama-registry/quarantine/
// (so they are never served again), and check that every manifest's blobs are there, whole.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { App } from '../../app.js';
import { digestFromBlobFileName } from '../../names.js';
import { BLOBS, blobKey, quarantineKey } from '../../storage/layout.js';
import { localFile } from '../../storage/local.js';
import { ManifestIndex } from '../manifests/manifest-index.js';
import { parseManifest } from '../manifests/manifest-format.js';
import { treeDigests } from '../manifests/manifest-tree.js';

export interface VerifyReport {
  blobs: { checked: number; bytes: number };
  corrupt: Array<{ digest: string; actual: string; size: number; quarantined: boolean }>;
  /** Manifests that cannot be pulled whole, and why. */
  broken: Array<{ name: string; reason: string }>;
  /** Files in blobs/ that are not blobs (e.g. ollama's -partial downloads): left alone. */
  stray: string[];
  ok: boolean;
}

export interface VerifyOptions {
  concurrency?: number;
  /** Move corrupt blobs aside (default true). */
  quarantine?: boolean;
  onProgress?: (doneBytes: number, totalBytes: number, what: string) => void;
}

type Answer = { id: number; progress?: number; digest?: string; size?: number; error?: string; code?: string };

/** A small pool of hashing workers; hash(file) resolves to its digest and size. */
function hashPool(n: number, onBytes: (b: number) => void) {
  const workers = Array.from({ length: n }, () => new Worker(new URL('./hash-worker.js', import.meta.url)));
  const waiting = new Map<number, { resolve: (a: Answer) => void }>();
  for (const w of workers) {
    w.on('message', (a: Answer) => {
      if (a.progress) onBytes(a.progress);
      if (a.digest || a.error) {
        waiting.get(a.id)?.resolve(a);
        waiting.delete(a.id);
      }
    });
  }
  let next = 0;
  return {
    hash(worker: number, file: string): Promise<Answer> {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, { resolve });
        workers[worker]!.postMessage({ id, file });
      });
    },
    progress: onBytes,
    close: () => Promise.all(workers.map((w) => w.terminate())),
  };
}

export async function verifyStore(app: App, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const report: VerifyReport = { blobs: { checked: 0, bytes: 0 }, corrupt: [], broken: [], stray: [], ok: true };
  const todo: Array<{ digest: string; size: number }> = [];
  for (const name of await app.driver.list(BLOBS)) {
    const digest = name.startsWith('sha256-') ? digestFromBlobFileName(name) : undefined;
    if (!digest) {
      report.stray.push(`${BLOBS}/${name}`);
      continue;
    }
    const st = await app.driver.stat(blobKey(digest));
    if (st) todo.push({ digest, size: st.size });
  }
  const total = todo.reduce((n, b) => n + b.size, 0);
  let doneBytes = 0;
  let current = '';
  const n = Math.max(1, Math.min(opts.concurrency ?? Math.min(os.availableParallelism(), 4), todo.length));
  const pool = hashPool(n, (b) => {
    doneBytes += b;
    opts.onProgress?.(doneBytes, total, current);
  });
  const quarantine = opts.quarantine !== false;
  try {
    let i = 0;
    await Promise.all(Array.from({ length: n }, async (_, w) => {
      while (i < todo.length) {
        const b = todo[i++]!;
        current = b.digest.slice(7, 19);
        // Worker threads read local files (several cores); other drivers stream from the store here.
        const file = localFile(app.driver, blobKey(b.digest));
        const a = file ? await pool.hash(w, file) : await streamHash(app, b.digest, (n) => pool.progress(n));
        if (a.code === 'ENOENT') continue; // removed meanwhile (gc, rm + gc)
        if (a.error) throw new Error(`cannot read ${blobKey(b.digest)}: ${a.error}`);
        report.blobs.checked++;
        report.blobs.bytes += a.size!;
        if (a.digest !== b.digest) {
          if (quarantine) await moveAside(app, b.digest);
          report.corrupt.push({ digest: b.digest, actual: a.digest!, size: a.size!, quarantined: quarantine });
        }
      }
    }));
  } finally {
    await pool.close();
  }
  opts.onProgress?.(total, total, '');

  const corrupt = new Set(report.corrupt.map((c) => c.digest));
  const index = new ManifestIndex(app.driver);
  await index.refresh();
  for (const e of index.list()) {
    if (e.error) {
      report.broken.push({ name: e.name, reason: e.error });
      continue;
    }
    // A list: its children's blobs too.
    const blobs = e.children.length ? await treeDigests(app.driver, parseManifest(await app.driver.readAll(e.key))).catch(() => e.blobs) : e.blobs;
    for (const d of blobs) {
      const size = await app.blobs.size(d.digest);
      let why: string | undefined;
      if (corrupt.has(d.digest)) why = `blob ${d.digest} is corrupt${quarantine ? ' (quarantined)' : ''}`;
      else if (size === null) why = `blob ${d.digest} is missing`;
      else if (size !== d.size) why = `blob ${d.digest} is ${size} bytes, the manifest says ${d.size}`;
      if (why) {
        report.broken.push({ name: e.name, reason: why });
        break;
      }
    }
  }
  report.ok = report.corrupt.length === 0 && report.broken.length === 0;
  return report;
}

/** The hash worker's answer, computed by streaming the blob from the driver. */
async function streamHash(app: App, digest: string, onBytes: (n: number) => void): Promise<Answer> {
  try {
    const a = await app.blobs.hashKey(blobKey(digest));
    onBytes(a.size);
    return { id: -1, ...a };
  } catch (e) {
    return { id: -1, error: (e as Error).message, code: (e as NodeJS.ErrnoException).code };
  }
}

/** Quarantine a corrupt blob: copied to quarantine/, then deleted (an object store cannot rename). */
async function moveAside(app: App, digest: string): Promise<void> {
  await app.driver.write(quarantineKey(digest), await app.driver.read(blobKey(digest)));
  await app.driver.delete(blobKey(digest));
}
