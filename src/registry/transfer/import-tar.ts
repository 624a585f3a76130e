// Import an ollama-layout bundle from a tar stream (a file, or stdin): entries are streamed,
// every blob is hashed while staged and published only when it matches its name, what exists
// is skipped, and manifests are taken last, only when every blob they need is in the store.
// The tar's paths never become file paths: blobs are stored by digest and manifests by their
// validated name, and `../`, absolute paths and link entries are refused outright.
// A truncated tar keeps what was complete and verified and reports the rest.
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { App } from '../../app.js';
import { isRegistryError, RegistryError } from '../../errors.js';
import { digestFromBlobFileName, isValidPart } from '../../names.js';
import type { ImportEvent, ImportProblem, ImportReport } from './importer.js';
import { MAX_MANIFEST_BYTES, parseManifest, type Manifest } from '../manifests/manifest-format.js';
import { adoptChildren, treeDigests } from '../manifests/manifest-tree.js';
import type { ManifestRef } from '../manifests/manifests.js';

type Target =
  | { kind: 'blob'; digest: string }
  | { kind: 'manifest'; ref: ManifestRef }
  | { kind: 'ignore' }
  | { kind: 'refuse'; reason: string };

/** Where a tar entry goes; the tar may hold the folder's content or one folder around it. */
export function classify(name: string, type: string): Target {
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return { kind: 'refuse', reason: 'absolute path refused' };
  const parts = name.split('/');
  if (parts.includes('..')) return { kind: 'refuse', reason: "'..' in the path refused" };
  if (name.includes('\\') || name.includes('\0')) return { kind: 'refuse', reason: 'unsafe characters in the path refused' };
  if (type === 'symlink' || type === 'link') return { kind: 'refuse', reason: `${type === 'link' ? 'hard link' : 'symbolic link'} entries are refused` };
  if (type === 'directory') return { kind: 'ignore' };
  if (type !== 'file' && type !== 'contiguous-file') return { kind: 'refuse', reason: `${type} entries are refused` };
  const segs = parts.filter((p) => p !== '' && p !== '.');
  const at = segs[0] === 'blobs' || segs[0] === 'manifests' ? 0 : segs[1] === 'blobs' || segs[1] === 'manifests' ? 1 : -1;
  if (at < 0) return { kind: 'ignore' };
  const rest = segs.slice(at + 1);
  if (segs[at] === 'blobs') {
    const digest = rest.length === 1 ? digestFromBlobFileName(rest[0]!) : undefined;
    return digest ? { kind: 'blob', digest } : { kind: 'ignore' };
  }
  if (rest.length !== 4) return { kind: 'ignore' };
  const [host, namespace, model, tag] = rest as [string, string, string, string];
  if (!(isValidPart('host', host) && isValidPart('namespace', namespace) && isValidPart('model', model) && isValidPart('tag', tag))) {
    return { kind: 'refuse', reason: 'bad manifest name (not a valid ollama name)' };
  }
  return { kind: 'manifest', ref: { host, namespace, model, tag } };
}

async function drain(s: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of s) { /* skip */ }
}

export async function importTar(app: App, input: Readable, onEvent: (e: ImportEvent) => void = () => {}): Promise<ImportReport> {
  const report: ImportReport = {
    manifests: { added: [], updated: [], unchanged: [] },
    blobs: { linked: 0, copied: 0, present: 0, bytes: 0 },
    badBlobs: [],
    skippedManifests: [],
    refused: [],
  };
  const problem = (list: ImportProblem[], p: ImportProblem) => {
    list.push(p);
    onEvent({ kind: 'problem', problem: p });
  };
  const bad = new Map<string, string>();
  const manifests = new Map<string, { ref: ManifestRef; file: string; bytes: Buffer }>();
  const extract = tar.extract();
  input.on('error', (e) => extract.destroy(e));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      const file = entry.header.name;
      const t = classify(file, entry.header.type);
      if (t.kind === 'blob') {
        if ((await app.blobs.size(t.digest)) !== null) {
          await drain(entry);
          report.blobs.present++;
          onEvent({ kind: 'blob', digest: t.digest, how: 'present', size: entry.header.size });
          continue;
        }
        try {
          const { size } = await app.blobs.put(t.digest, Readable.from(entry), entry.header.size);
          report.blobs.copied++;
          report.blobs.bytes += size;
          bad.delete(t.digest);
          onEvent({ kind: 'blob', digest: t.digest, how: 'copied', size });
        } catch (e) {
          if (!isRegistryError(e) || (e.code !== 'DIGEST_INVALID' && e.code !== 'SIZE_INVALID')) throw e;
          const reason = 'corrupt: its sha256 does not match its name';
          bad.set(t.digest, reason);
          problem(report.badBlobs, { file, reason });
        }
      } else if (t.kind === 'manifest') {
        if (entry.header.size > MAX_MANIFEST_BYTES) {
          await drain(entry);
          problem(report.skippedManifests, { file, reason: `larger than ${MAX_MANIFEST_BYTES} bytes: not a manifest` });
          continue;
        }
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer);
        manifests.set(file, { ref: t.ref, file, bytes: Buffer.concat(chunks) });
      } else {
        await drain(entry);
        if (t.kind === 'refuse') problem(report.refused!, { file, reason: t.reason });
      }
    }
  } catch (e) {
    if (isRegistryError(e) && e.code === 'INSUFFICIENT_STORAGE') {
      throw new RegistryError('INSUFFICIENT_STORAGE', `${e.message}; the import stopped`, { cause: e });
    }
    if (isRegistryError(e) || (e as NodeJS.ErrnoException).code === 'EACCES') throw e;
    report.incomplete = `the tar ends early or cannot be read (${(e as Error).message}); kept what was complete and verified`;
    extract.destroy();
  }

  for (const m of manifests.values()) {
    const name = `${m.ref.host}/${m.ref.namespace}/${m.ref.model}:${m.ref.tag}`;
    let why: string | undefined;
    let parsed: Manifest | undefined;
    try {
      parsed = parseManifest(m.bytes);
      for (const d of await treeDigests(app.driver, parsed)) { // a list's children's blobs too
        const size = await app.blobs.size(d.digest);
        if (size === null) why = `needs blob ${d.digest}, which is ${bad.get(d.digest) ?? 'neither in the bundle nor in this registry'}`;
        else if (size !== d.size) why = `needs blob ${d.digest} of ${d.size} bytes; the one here has ${size}`;
        if (why) break;
      }
    } catch (e) {
      why = (e as Error).message;
    }
    if (why) {
      problem(report.skippedManifests, { file: m.file, reason: why });
      continue;
    }
    const existing = await app.manifests.read(m.ref);
    if (existing && existing.bytes.equals(m.bytes)) report.manifests.unchanged.push(name);
    else {
      await app.manifests.put(m.ref, m.bytes);
      (existing ? report.manifests.updated : report.manifests.added).push(name);
    }
    if (parsed) await adoptChildren(app.manifests, m.ref, parsed);
  }
  return report;
}
