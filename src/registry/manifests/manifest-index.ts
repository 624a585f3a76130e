// Every manifest file of every host folder, with the blobs it references. gc, ls, verify and
// export share it. refresh() re-reads only files whose stat changed, so gc can call it again
// right before each delete without re-parsing the whole tree.
//
// Manifests stored by digest only (.ollama-registry/untagged/…) and the children of lists
// (manifests stored as blobs) are read too: a child's layers are referenced like the list's own.
// An untagged manifest is live while a live list or `subject` names it, while it is a referrer
// (`subject`) of a live manifest, or while it is younger than the caller's grace period.
import { digestFromBlobFileName, isValidPart } from '../../names.js';
import { readAllIfExists, type Driver } from '../../storage/driver.js';
import { blobKey, MANIFESTS, UNTAGGED } from '../../storage/layout.js';
import { sha256Digest } from '../blobs/hashing.js';
import { childManifests, MAX_MANIFEST_BYTES, parseManifest, referencedDigests, type Descriptor, type Manifest } from './manifest-format.js';
import { readBlobManifest, TreeWalk } from './manifest-tree.js';
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
  /** Manifests named by digest that are read as blobs: a list's children, the subject. */
  children: string[];
}

/** A manifest stored by digest only in one repository. */
export interface UntaggedEntry {
  key: string;
  /** host/namespace/model@digest */
  name: string;
  digest: string;
  /** Its own bytes' blob, what it references, and its subject. */
  digests: string[];
  children: string[];
  subject?: string;
  mtimeMs: number;
}

interface Cached extends ManifestEntry {
  stamp: string;
}

/** Told of every entry that appears, changes (both set) or goes (next undefined). */
export type IndexListener = (prev: ManifestEntry | undefined, next: ManifestEntry | undefined) => void;

/** What a manifest names, apart: its references (a list's children among them), its list children, its subject. */
export interface ManifestNames {
  refs: string[];
  lists: string[];
  subject?: string;
}

function shapeOf(m: Manifest): ManifestNames {
  return { refs: referencedDigests(m).map((d) => d.digest), lists: childManifests(m).map((d) => d.digest), subject: m.subject?.digest };
}

/** What a manifest names: blobs (its own references and subject) and manifests to read further. */
function namesOf(bytes: Buffer): { digests: string[]; children: string[]; subject?: string } {
  const { refs: digests, lists, subject } = shapeOf(parseManifest(bytes));
  if (subject && !digests.includes(subject)) digests.push(subject);
  return { digests, children: [...lists, ...(subject ? [subject] : [])], subject };
}

/** The manifests a manifest's names lead to: its list children and its subject. */
function followed(n: ManifestNames): string[] {
  return n.subject ? [...n.lists, n.subject] : n.lists;
}

export class ManifestIndex {
  private entries = new Map<string, Cached>();
  private untaggedEntries = new Map<string, UntaggedEntry>();
  /** Manifests read from blobs, by digest (content-addressed: never stale). */
  private blobManifests = new Map<string, ManifestNames>();

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
    // One listing with sizes and times (one LIST call per 1000 keys on an object store).
    for await (const st of d.entries(MANIFESTS)) {
      const parts = st.key.split('/');
      if (parts.length !== 5) continue;
      const key = st.key;
      seen.add(key);
      const stamp = `${st.size}:${st.mtimeMs}`;
      if (this.entries.get(key)?.stamp === stamp) continue;
      const entry = await this.read(key, parts.slice(1), st.size, st.mtimeMs);
      if (entry) this.set(key, { ...entry, stamp });
    }
    for (const key of [...this.entries.keys()]) if (!seen.has(key)) this.set(key, undefined);
    await this.refreshUntagged();
    await this.readChildren();
  }

  /** Re-read one manifest file (a key under manifests/) after a write or delete; cheap when unchanged. */
  async refreshKey(key: string): Promise<void> {
    const parts = key.split('/');
    if (parts.length !== 5 || parts[0] !== MANIFESTS) return;
    const st = await this.driver.stat(key);
    if (!st) return this.set(key, undefined);
    const stamp = `${st.size}:${st.mtimeMs}`;
    if (this.entries.get(key)?.stamp === stamp) return;
    const entry = await this.read(key, parts.slice(1), st.size, st.mtimeMs);
    this.set(key, entry ? { ...entry, stamp } : undefined);
  }

  /** Walk .ollama-registry/untagged/<host>/<namespace>/<model>/sha256-<hex>. */
  private async refreshUntagged(): Promise<void> {
    const d = this.driver;
    const seen = new Set<string>();
    const safe = (p: string) => p !== '' && p !== '.' && p !== '..' && !/[/\\\0]/.test(p);
    for await (const st of d.entries(UNTAGGED)) {
      const [host, ns, model, file, ...rest] = st.key.slice(UNTAGGED.length + 1).split('/');
      if (rest.length || !file || ![host, ns, model].every((p) => safe(p!))) continue;
      const digest = digestFromBlobFileName(file);
      if (!digest || !file.startsWith('sha256-')) continue;
      const key = st.key;
      seen.add(key);
      const had = this.untaggedEntries.get(key);
      if (had && had.mtimeMs === st.mtimeMs) continue;
      const entry: UntaggedEntry = { key, name: `${host}/${ns}/${model}@${digest}`, digest, digests: [digest], children: [], mtimeMs: st.mtimeMs };
      const bytes = await readAllIfExists(d, blobKey(digest));
      if (bytes && bytes.length <= MAX_MANIFEST_BYTES) {
        try {
          const n = namesOf(bytes);
          entry.digests.push(...n.digests);
          entry.children = n.children;
          entry.subject = n.subject;
        } catch {
          entry.digests.push(...new Set(bytes.toString('latin1').match(DIGEST_SCAN) ?? []));
        }
      }
      this.untaggedEntries.set(key, entry);
    }
    for (const key of this.untaggedEntries.keys()) if (!seen.has(key)) this.untaggedEntries.delete(key);
  }

  /** Read every child manifest (and theirs) that is stored as a blob; forget those no manifest names now. */
  private async readChildren(): Promise<void> {
    const walk = new TreeWalk([...this.entries.values(), ...this.untaggedEntries.values()].flatMap((e) => e.children));
    const named = new Set<string>();
    for (let digest = walk.next(); digest; digest = walk.next()) {
      named.add(digest);
      const known = await this.blobNames(digest);
      // absent, or not a manifest: the blob itself is referenced, nothing more
      if (known) walk.add(followed(known));
    }
    for (const digest of this.blobManifests.keys()) if (!named.has(digest)) this.blobManifests.delete(digest);
  }

  /**
   * What the manifest kept as blob `digest` names; null when it is absent or not a manifest
   * (not remembered: a cache fetches children later, so it is read again once it lands).
   */
  async blobNames(digest: string): Promise<ManifestNames | null> {
    const known = this.blobManifests.get(digest);
    if (known) return known;
    const child = await readBlobManifest(this.driver, digest);
    if (!child) return null;
    const names = shapeOf(child.manifest);
    this.blobManifests.set(digest, names);
    return names;
  }

  untagged(): UntaggedEntry[] {
    return [...this.untaggedEntries.values()];
  }

  private async read(key: string, [host, namespace, model, tag]: string[], size: number, mtimeMs: number): Promise<ManifestEntry | null> {
    const valid = isValidPart('host', host!) && isValidPart('namespace', namespace!) && isValidPart('model', model!) && isValidPart('tag', tag!);
    const base = {
      key, ref: valid ? { host: host!, namespace: namespace!, model: model!, tag: tag! } : null,
      name: `${host}/${namespace}/${model}:${tag}`, mtimeMs,
    };
    if (size > MAX_MANIFEST_BYTES) {
      return { ...base, digest: '', blobs: [], size: 0, digests: [], children: [], error: `larger than ${MAX_MANIFEST_BYTES} bytes: not a manifest` };
    }
    const bytes = await readAllIfExists(this.driver, key);
    if (!bytes) return null;
    const digest = sha256Digest(bytes);
    try {
      const blobs = referencedDigests(parseManifest(bytes));
      const n = namesOf(bytes);
      return { ...base, digest, blobs, size: blobs.reduce((s, b) => s + b.size, 0), digests: n.digests, children: n.children, error: valid ? undefined : 'not a valid ollama name' };
    } catch (e) {
      const digests = [...new Set(bytes.toString('latin1').match(DIGEST_SCAN) ?? [])];
      return { ...base, digest, blobs: [], size: 0, digests, children: [], error: (e as Error).message };
    }
  }

  list(): ManifestEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Every digest a live manifest (tagged ones other than the excluded keys, and live untagged
   * ones) may reference, through list children read as blobs. Untagged manifests younger than
   * graceMs are live; with the default every untagged one is.
   */
  referenced(exclude?: Set<string>, graceMs = Infinity, now = Date.now()): Set<string> {
    return this.closure(exclude, graceMs, now).digests;
  }

  /** Untagged manifests that nothing keeps (see the file's comment); gc removes their markers. */
  deadUntagged(graceMs: number, now = Date.now()): UntaggedEntry[] {
    const live = this.closure(undefined, graceMs, now).untagged;
    return this.untagged().filter((u) => !live.has(u.key));
  }

  private closure(exclude: Set<string> | undefined, graceMs: number, now: number): { digests: Set<string>; untagged: Set<string> } {
    const out = new Set<string>();
    const live = new Set<string>();
    // One walk for all roots: each child manifest's names are added once.
    const walk = new TreeWalk<string>();
    const add = (digests: string[], children: string[]) => {
      for (const d of digests) out.add(d);
      walk.add(children);
      for (let c = walk.next(); c; c = walk.next()) {
        const m = this.blobManifests.get(c);
        if (!m) continue;
        for (const d of m.refs) out.add(d);
        if (m.subject) out.add(m.subject);
        walk.add(followed(m));
      }
    };
    for (const e of this.entries.values()) {
      if (exclude?.has(e.key)) continue;
      out.add(e.digest);
      add(e.digests, e.children);
    }
    for (let grew = true; grew;) {
      grew = false;
      for (const u of this.untaggedEntries.values()) {
        if (live.has(u.key)) continue;
        if (now - u.mtimeMs < graceMs || out.has(u.digest) || (u.subject !== undefined && out.has(u.subject))) {
          live.add(u.key);
          add(u.digests, u.children);
          grew = true;
        }
      }
    }
    return { digests: out, untagged: live };
  }

  has(digest: string): boolean {
    return this.referenced().has(digest);
  }
}

/** host/namespace/model:tag — how the registry's own files (pins, last pulls) name a tag. */
export function refName(ref: ManifestRef): string {
  return `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
}
