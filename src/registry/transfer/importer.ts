// Bring another ollama models folder into the store: every blob verified by its sha256 (hard
// linked into the scratch area when on the same filesystem, else copied, then put into the
// store), what is present skipped, bad files reported by name and left out together with every
// manifest that needs them. The foreign folder is read with node:fs (storage/local.ts).
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import type { App } from '../../app.js';
import { fromFsError, isRegistryError, RegistryError } from '../../errors.js';
import { digestHex, isValidPart } from '../../names.js';
import { discard, linkOrCopy, scratchFile } from '../../storage/local.js';
import { HashingStream } from '../blobs/hashing.js';
import { MAX_MANIFEST_BYTES, parseManifest, referencedDigests, type Descriptor } from '../manifests/manifest-format.js';
import { adoptChildren, readBlobManifest, TreeWalk } from '../manifests/manifest-tree.js';
import type { ManifestRef } from '../manifests/manifests.js';

export interface ImportProblem {
  /** Path relative to the imported folder. */
  file: string;
  reason: string;
}

export interface ImportReport {
  manifests: { added: string[]; updated: string[]; unchanged: string[] };
  blobs: { linked: number; copied: number; present: number; bytes: number };
  badBlobs: ImportProblem[];
  skippedManifests: ImportProblem[];
  /** Tar entries refused outright (`../`, absolute paths, links). */
  refused?: ImportProblem[];
  /** Set when a tar ended early: what was complete and verified was kept. */
  incomplete?: string;
}

export type ImportEvent = { kind: 'blob'; digest: string; how: 'linked' | 'copied' | 'present'; size: number } | { kind: 'problem'; problem: ImportProblem };

async function entries(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}

/** Every manifest file (exactly four levels under manifests/), with names that don't validate reported. */
async function manifestFiles(src: string, report: ImportReport): Promise<Array<ManifestRef & { file: string }>> {
  const out: Array<ManifestRef & { file: string }> = [];
  const root = path.join(src, 'manifests');
  for (const host of await entries(root)) {
    for (const namespace of await entries(path.join(root, host))) {
      for (const model of await entries(path.join(root, host, namespace))) {
        for (const tag of await entries(path.join(root, host, namespace, model))) {
          const rel = path.join('manifests', host, namespace, model, tag);
          const ok = isValidPart('host', host) && isValidPart('namespace', namespace) && isValidPart('model', model) && isValidPart('tag', tag);
          if (!ok) report.skippedManifests.push({ file: rel, reason: 'bad manifest name (not a valid ollama name)' });
          else out.push({ host, namespace, model, tag, file: rel });
        }
      }
    }
  }
  return out;
}

export async function importFolder(app: App, src: string, onEvent: (e: ImportEvent) => void = () => {}): Promise<ImportReport> {
  const report: ImportReport = {
    manifests: { added: [], updated: [], unchanged: [] },
    blobs: { linked: 0, copied: 0, present: 0, bytes: 0 },
    badBlobs: [],
    skippedManifests: [],
  };
  if (!(await isDir(path.join(src, 'manifests')))) {
    throw new Error(`${src} is not an ollama models folder (it has no manifests/ folder)`);
  }
  const problem = (list: ImportProblem[], p: ImportProblem) => {
    list.push(p);
    onEvent({ kind: 'problem', problem: p });
  };
  // digest → null when good (in the store now), or the reason it is not.
  const blobState = new Map<string, string | null>();

  const bringBlob = async (d: Descriptor): Promise<string | null> => {
    const hex = digestHex(d.digest);
    if ((await app.blobs.size(d.digest)) !== null) {
      report.blobs.present++;
      onEvent({ kind: 'blob', digest: d.digest, how: 'present', size: d.size });
      return null;
    }
    const candidates = [`sha256-${hex}`, `sha256:${hex}`].map((f) => path.join('blobs', f));
    let rel: string | undefined;
    for (const c of candidates) if (await stat(path.join(src, c)).then((s) => s.isFile(), () => false)) rel = c;
    if (!rel) return `missing (no ${candidates[0]})`;
    await app.space.check(`importing ${rel}`); // below storage.minFree: stop here (a hard link needs no room, a copy does)
    const local = await scratchFile(app.scratch, 'import');
    const noSpace = (e: unknown) => {
      if (isRegistryError(e) && e.code === 'INSUFFICIENT_STORAGE') {
        throw new RegistryError('INSUFFICIENT_STORAGE', `no space left on the registry's disk while importing ${rel}; the import stopped, and nothing half-written was kept`, { cause: e });
      }
      throw e;
    };
    try {
      // The linked (or copied) file is what gets hashed and published: the source replaced meanwhile cannot slip in.
      const how = await linkOrCopy(path.join(src, rel), local).catch((e) => noSpace(fromFsError(e, local)));
      const hasher = new HashingStream();
      await pipeline(createReadStream(local, { highWaterMark: 1 << 20 }), hasher, async (chunks) => {
        for await (const _ of chunks) { /* drain */ }
      });
      if (hasher.digest() !== d.digest) {
        const actual = (await stat(path.join(src, rel))).size;
        const reason = actual < d.size ? `truncated: ${actual} of ${d.size} bytes` : 'corrupt: its sha256 does not match its name';
        problem(report.badBlobs, { file: rel, reason });
        return reason;
      }
      await app.blobs.publishFile(local, d.digest).catch(noSpace);
      report.blobs[how]++;
      report.blobs.bytes += hasher.bytes;
      onEvent({ kind: 'blob', digest: d.digest, how, size: hasher.bytes });
      return null;
    } finally {
      await discard(local);
    }
  };

  for (const ref of await manifestFiles(src, report)) {
    const name = `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
    let bytes: Buffer;
    try {
      const st = await stat(path.join(src, ref.file));
      if (!st.isFile()) throw new Error('not a file');
      if (st.size > MAX_MANIFEST_BYTES) throw new Error(`larger than ${MAX_MANIFEST_BYTES} bytes`);
      bytes = await readFile(path.join(src, ref.file));
    } catch (e) {
      problem(report.skippedManifests, { file: ref.file, reason: `unreadable: ${(e as Error).message}` });
      continue;
    }
    let refs: Descriptor[];
    try {
      refs = referencedDigests(parseManifest(bytes));
    } catch (e) {
      problem(report.skippedManifests, { file: ref.file, reason: (e as Error).message });
      continue;
    }
    let missing: string | undefined;
    const walk = new TreeWalk(refs, (d) => d.digest);
    for (let d = walk.next(); d; d = walk.next()) {
      if (!blobState.has(d.digest)) blobState.set(d.digest, await bringBlob(d));
      const why = blobState.get(d.digest);
      if (why && !missing) missing = `needs blob ${d.digest}, which is ${why}`;
      // A list's child is a manifest kept as a blob: its blobs come too.
      const child = why ? null : await readBlobManifest(app.driver, d.digest);
      if (child) walk.add(referencedDigests(child.manifest));
    }
    if (missing) {
      problem(report.skippedManifests, { file: ref.file, reason: missing });
      continue;
    }
    const existing = await app.manifests.read(ref);
    if (existing && existing.bytes.equals(bytes)) report.manifests.unchanged.push(name);
    else {
      await app.manifests.put(ref, bytes);
      (existing ? report.manifests.updated : report.manifests.added).push(name);
    }
    await adoptChildren(app.manifests, ref, parseManifest(bytes));
  }
  return report;
}
