// `export`: an ollama-layout bundle (blobs/ + manifests/) of some tags, as a folder or a tar
// stream. Blobs are streamed (never held in memory), shared blobs go once, and every blob is
// re-hashed on the way out (a corrupt one is reported, with the tags needing it). In a folder a
// manifest is written only after all its blobs; a tar carries the manifests first (see Sink).
// Incremental: leave out what the other side has (its `ls --json`) or what it had at a date.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { App } from '../../app.js';
import { fromFsError } from '../../errors.js';
import { blobKey, manifestKey } from '../../storage/layout.js';
import { writeFileAtomic } from '../../storage/local.js';
import { HashingStream } from '../blobs/hashing.js';
import { findByName } from '../manifests/lookup.js';
import { ManifestIndex, refName } from '../manifests/manifest-index.js';
import { parseManifest, type Descriptor } from '../manifests/manifest-format.js';
import { treeDigests } from '../manifests/manifest-tree.js';
import type { ManifestRef } from '../manifests/manifests.js';

export interface ExportSelection {
  names?: string[];
  all?: boolean;
  /** The other side has everything this registry had at this time (ms since epoch). */
  since?: number;
  /** The other side's `ls --json`: tags it has (name → manifest digest) and the blobs it has. */
  have?: { tags: Map<string, string>; blobs: Set<string> };
}

export interface ExportTag {
  ref: ManifestRef;
  name: string;
  bytes: Buffer;
  blobs: Descriptor[];
}

export interface ExportPlan {
  tags: ExportTag[];
  /** Blobs to write, each once. */
  blobs: Array<{ digest: string; size: number }>;
  bytes: number;
  /** Tags left out because the other side has them. */
  upToDate: string[];
}

export interface ExportResult {
  tags: string[];
  blobs: { written: number; present: number; bytes: number };
  /** Blobs that failed their hash on the way out, and the tags left out for them. */
  bad: Array<{ digest: string; reason: string }>;
  skipped: Array<{ name: string; reason: string }>;
}

/** The other side's `ls --json` output → what it has. */
export function parseHave(json: string): NonNullable<ExportSelection['have']> {
  const o = JSON.parse(json) as { models?: Array<{ name?: unknown; digest?: unknown; blobs?: Array<{ digest?: unknown }> }> };
  if (!o || !Array.isArray(o.models)) throw new Error('not the output of `ollama-registry ls --json` (no "models" list)');
  const have = { tags: new Map<string, string>(), blobs: new Set<string>() };
  for (const m of o.models) {
    if (typeof m.name === 'string' && typeof m.digest === 'string') have.tags.set(m.name.toLowerCase(), m.digest);
    for (const b of m.blobs ?? []) if (typeof b.digest === 'string') have.blobs.add(b.digest);
  }
  return have;
}

export async function planExport(app: App, sel: ExportSelection): Promise<ExportPlan> {
  const refs: ManifestRef[] = [];
  if (sel.all) {
    const index = new ManifestIndex(app.driver);
    await index.refresh();
    for (const e of index.list()) if (e.ref && !e.error) refs.push(e.ref);
  }
  for (const n of sel.names ?? []) {
    const m = await findByName(app.manifests, n);
    if (!m) throw new Error(`${n} is not in this registry (see ollama-registry ls)`);
    refs.push(m);
  }
  const plan: ExportPlan = { tags: [], blobs: [], bytes: 0, upToDate: [] };
  const seenTags = new Set<string>();
  const seenBlobs = new Set<string>();
  for (const ref of refs) {
    const name = refName(ref);
    if (seenTags.has(name)) continue;
    seenTags.add(name);
    const m = await app.manifests.read(ref);
    if (!m) throw new Error(`${name} was removed while exporting`);
    const blobs = await treeDigests(app.driver, parseManifest(m.bytes)); // a list's children's blobs too
    if (sel.have?.tags.get(name.toLowerCase()) === m.digest || (sel.since !== undefined && m.mtimeMs < sel.since)) {
      plan.upToDate.push(name);
      continue;
    }
    plan.tags.push({ ref: { host: ref.host, namespace: ref.namespace, model: ref.model, tag: ref.tag }, name, bytes: m.bytes, blobs });
    for (const b of blobs) {
      if (seenBlobs.has(b.digest) || sel.have?.blobs.has(b.digest)) continue;
      seenBlobs.add(b.digest);
      const st = await app.driver.stat(blobKey(b.digest));
      if (!st) throw new Error(`${name} needs blob ${b.digest}, which is missing from this registry (run ollama-registry verify)`);
      if (sel.since !== undefined && st.mtimeMs < sel.since) continue;
      plan.blobs.push({ digest: b.digest, size: st.size });
      plan.bytes += st.size;
    }
  }
  return plan;
}

type Sink = {
  /**
   * Tars carry manifests first: an importer holds them (they are small) and takes each one
   * whose blobs all arrived, so a truncated tar still yields every complete model.
   */
  manifestsFirst: boolean;
  /** Is the blob there already (folder export into an existing folder)? */
  has(digest: string, size: number): Promise<boolean>;
  /**
   * Write one blob from `source` through `transforms`; keep it only when `verify()` says the
   * bytes were right. Returns whether it was kept.
   */
  blob(digest: string, size: number, source: Readable, transforms: Transform[], verify: () => boolean): Promise<boolean>;
  manifest(ref: ManifestRef, bytes: Buffer): Promise<void>;
  finish(): Promise<void>;
};

/** Run a plan into a sink: blobs first (hashed on the way), then the manifests whose blobs all went. */
async function run(app: App, plan: ExportPlan, sink: Sink, onBytes: (n: number, what: string) => void): Promise<ExportResult> {
  const res: ExportResult = { tags: [], blobs: { written: 0, present: 0, bytes: 0 }, bad: [], skipped: [] };
  const bad = new Set<string>();
  let done = 0;
  if (sink.manifestsFirst) for (const t of plan.tags) await sink.manifest(t.ref, t.bytes);
  for (const b of plan.blobs) {
    if (await sink.has(b.digest, b.size)) {
      res.blobs.present++;
      onBytes((done += b.size), b.digest);
      continue;
    }
    const hasher = new HashingStream();
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        onBytes((done += chunk.length), b.digest);
        cb(null, chunk);
      },
    });
    const ok = await sink.blob(b.digest, b.size, await app.blobs.open(b.digest), [hasher, tap], () => hasher.digest() === b.digest && hasher.bytes === b.size);
    if (!ok) {
      bad.add(b.digest);
      res.bad.push({ digest: b.digest, reason: 'corrupt in this registry (its bytes do not match its sha256); run ollama-registry verify' });
      continue;
    }
    res.blobs.written++;
    res.blobs.bytes += b.size;
  }
  for (const t of plan.tags) {
    const missing = t.blobs.find((b) => bad.has(b.digest));
    if (missing) {
      res.skipped.push({ name: t.name, reason: `needs blob ${missing.digest}, which is corrupt${sink.manifestsFirst ? ' (an importer will reject the tag)' : ''}` });
      continue;
    }
    if (!sink.manifestsFirst) await sink.manifest(t.ref, t.bytes);
    res.tags.push(t.name);
  }
  await sink.finish();
  return res;
}

class Discard extends Error {}

const manifestKeyOf = (ref: ManifestRef) => manifestKey(ref.host, ref.namespace, ref.model, ref.tag);

/** Into a folder (new or an existing ollama models folder): each file staged, fsynced, renamed. */
export async function exportToDir(app: App, plan: ExportPlan, dir: string, onBytes: (n: number, what: string) => void = () => {}): Promise<ExportResult> {
  // The bundle is an ollama models folder: the store's own layout.
  const blobPath = (d: string) => path.join(dir, blobKey(d));
  const full = (e: unknown, what: string) => {
    const err = fromFsError(e, what);
    if (err !== e) (err as Error).message = `no space left on ${dir} while writing ${what}; what was written so far is complete`;
    return err;
  };
  const sink: Sink = {
    manifestsFirst: false,
    has: async (d, size) => (await stat(blobPath(d)).catch(() => null))?.size === size,
    blob: async (d, _size, source, transforms, verify) => {
      try {
        await writeFileAtomic(blobPath(d), async (part) => {
          await pipeline([source, ...transforms, createWriteStream(part, { highWaterMark: 1 << 20, mode: 0o644 })]);
          if (!verify()) throw new Discard();
        });
        return true;
      } catch (e) {
        if (e instanceof Discard) return false;
        throw full(e, blobKey(d));
      }
    },
    manifest: (ref, bytes) => writeFileAtomic(path.join(dir, manifestKeyOf(ref)), (part) => writeFile(part, bytes, { mode: 0o644 }))
      .catch((e) => { throw full(e, manifestKeyOf(ref)); }),
    finish: async () => {},
  };
  return run(app, plan, sink, onBytes);
}

/** As a tar stream (to a file or stdout): manifests/ entries first, then blobs/ entries. */
export async function exportToTar(app: App, plan: ExportPlan, out: NodeJS.WritableStream, onBytes: (n: number, what: string) => void = () => {}): Promise<ExportResult> {
  const pack = tar.pack();
  const piped = new Promise<void>((resolve, reject) => {
    pack.on('error', reject);
    out.on('error', reject);
    out.on('finish', resolve);
    pack.pipe(out as Writable);
  });
  piped.catch(() => {}); // observed by finish(); an early failure also surfaces through the entry
  const mtime = new Date();
  const entry = (name: string, size: number) => {
    const e = pack.entry({ name, size, mode: 0o644, mtime });
    const done = new Promise<void>((resolve, reject) => {
      e.on('error', reject);
      e.on('finish', resolve);
      void piped.catch(reject);
    });
    return { e, done };
  };
  const sink: Sink = {
    manifestsFirst: true,
    has: async () => false,
    blob: async (d, size, source, transforms, verify) => {
      const { e, done } = entry(blobKey(d), size);
      const into = new Writable({
        highWaterMark: 1 << 20,
        write(c: Buffer, _enc, cb) {
          if (e.write(c)) cb();
          else Promise.race([once(e, 'drain'), done]).then(() => cb(), cb);
        },
      });
      await pipeline([source, ...transforms, into]);
      e.end(undefined);
      await done;
      // A tar entry cannot be taken back: a bad one stays, and the importer rejects it by its hash.
      return verify();
    },
    manifest: async (ref, bytes) => {
      const { e, done } = entry(manifestKeyOf(ref), bytes.length);
      e.end(bytes);
      await done;
    },
    finish: async () => {
      pack.finalize();
      await piped;
    },
  };
  return run(app, plan, sink, onBytes);
}
