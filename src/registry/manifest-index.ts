// Every manifest file of every host folder, with the blobs it references. gc, ls, verify and
// export share it. refresh() re-reads only files whose stat changed, so gc can call it again
// right before each delete without re-parsing the whole tree.
import { isValidPart } from '../names.js';
import { readAllIfExists, type Driver } from '../storage/driver.js';
import { MANIFESTS, manifestTreeKey } from '../storage/layout.js';
import { sha256Digest } from './hashing.js';
import { MAX_MANIFEST_BYTES, parseManifest, referencedDigests, type Descriptor } from './manifest-format.js';
import type { ManifestRef } from './manifests.js';

const DIGEST_SCAN = /sha256:[0-9a-f]{64}/g;

export interface ManifestEntry {
  /** Storage key of the manifest file. */
  key: string;
  /** Null when the folder names are not a valid ollama name (such files are never served). */
  ref: ManifestRef | null;
  /** host/namespace/model:tag as stored. */
  name: string;
  /** sha256 of the manifest bytes. */
  digest: string;
  /** Blobs the manifest references (config first); empty when it does not parse. */
  blobs: Descriptor[];
  /** Sum of the referenced blob sizes, as the manifest states them. */
  size: number;
  /** Every digest the file may reference: for a file that does not parse, every sha256 in it. */
  digests: string[];
  /** Why the file is not a usable manifest. */
  error?: string;
  mtimeMs: number;
}

interface Cached extends ManifestEntry {
  stamp: string;
}

/** Told of every entry that appears, changes (both set) or goes (next undefined). */
export type IndexListener = (prev: ManifestEntry | undefined, next: ManifestEntry | undefined) => void;

export class ManifestIndex {
  private entries = new Map<string, Cached>();

  constructor(private readonly driver: Driver, private readonly onChange?: IndexListener) {}

  private set(key: string, entry: Cached | undefined): void {
    const prev = this.entries.get(key);
    if (entry) this.entries.set(key, entry);
    else if (prev) this.entries.delete(key);
    else return;
    this.onChange?.(prev, entry);
  }

  /** Walk manifests/<host>/<namespace>/<model>/<tag>; re-read only files that changed. */
  async refresh(): Promise<void> {
    const seen = new Set<string>();
    const d = this.driver;
    for (const host of await d.list(MANIFESTS)) {
      for (const ns of await d.list(manifestTreeKey(host))) {
        for (const model of await d.list(manifestTreeKey(host, ns))) {
          for (const tag of await d.list(manifestTreeKey(host, ns, model))) {
            const key = manifestTreeKey(host, ns, model, tag);
            const st = await d.stat(key);
            if (!st || st.isDir) continue;
            seen.add(key);
            const stamp = `${st.size}:${st.mtimeMs}:${st.ctimeMs ?? ''}`;
            if (this.entries.get(key)?.stamp === stamp) continue;
            const entry = await this.read(key, [host, ns, model, tag], st.size, st.mtimeMs);
            if (entry) this.set(key, { ...entry, stamp });
          }
        }
      }
    }
    for (const key of [...this.entries.keys()]) if (!seen.has(key)) this.set(key, undefined);
  }

  /** Re-read one manifest file (a key under manifests/) after a write or delete; cheap when unchanged. */
  async refreshKey(key: string): Promise<void> {
    const parts = key.split('/');
    if (parts.length !== 5 || parts[0] !== MANIFESTS) return;
    const st = await this.driver.stat(key);
    if (!st || st.isDir) return this.set(key, undefined);
    const stamp = `${st.size}:${st.mtimeMs}:${st.ctimeMs ?? ''}`;
    if (this.entries.get(key)?.stamp === stamp) return;
    const entry = await this.read(key, parts.slice(1), st.size, st.mtimeMs);
    this.set(key, entry ? { ...entry, stamp } : undefined);
  }

  private async read(key: string, [host, namespace, model, tag]: string[], size: number, mtimeMs: number): Promise<ManifestEntry | null> {
    const valid = isValidPart('host', host!) && isValidPart('namespace', namespace!) && isValidPart('model', model!) && isValidPart('tag', tag!);
    const base = {
      key, ref: valid ? { host: host!, namespace: namespace!, model: model!, tag: tag! } : null,
      name: `${host}/${namespace}/${model}:${tag}`, mtimeMs,
    };
    if (size > MAX_MANIFEST_BYTES) {
      return { ...base, digest: '', blobs: [], size: 0, digests: [], error: `larger than ${MAX_MANIFEST_BYTES} bytes: not a manifest` };
    }
    const bytes = await readAllIfExists(this.driver, key);
    if (!bytes) return null;
    const digest = sha256Digest(bytes);
    try {
      const blobs = referencedDigests(parseManifest(bytes));
      return { ...base, digest, blobs, size: blobs.reduce((n, b) => n + b.size, 0), digests: blobs.map((b) => b.digest), error: valid ? undefined : 'not a valid ollama name' };
    } catch (e) {
      const digests = [...new Set(bytes.toString('latin1').match(DIGEST_SCAN) ?? [])];
      return { ...base, digest, blobs: [], size: 0, digests, error: (e as Error).message };
    }
  }

  list(): ManifestEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Every digest some manifest (other than the excluded keys) may reference. */
  referenced(exclude?: Set<string>): Set<string> {
    const out = new Set<string>();
    for (const e of this.entries.values()) if (!exclude?.has(e.key)) for (const d of e.digests) out.add(d);
    return out;
  }

  has(digest: string): boolean {
    for (const e of this.entries.values()) if (e.digests.includes(digest)) return true;
    return false;
  }
}

/** host/namespace/model:tag — how the registry's own files (pins, last pulls) name a tag. */
export function refName(ref: ManifestRef): string {
  return `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
}
