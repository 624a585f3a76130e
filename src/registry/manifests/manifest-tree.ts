// A list's children are manifests kept as blobs (ollama's manifest list pushes them so; an OCI
// index's children pushed by digest are stored so too). What a whole tree needs is found by
// reading them: export, verify, import and prefetch use this; gc's index reads them the same way.
import { readAllIfExists, type Driver } from '../../storage/driver.js';
import { blobKey } from '../../storage/layout.js';
import { sha256Digest } from '../blobs/hashing.js';
import { childManifests, MAX_MANIFEST_BYTES, parseManifest, referencedDigests, type Descriptor, type Manifest } from './manifest-format.js';
import type { ManifestStore, Repo } from './manifests.js';

/** The manifest held by blob `digest`; null when absent, too large, damaged or not a manifest. */
export async function readBlobManifest(driver: Driver, digest: string): Promise<{ manifest: Manifest; bytes: Buffer } | null> {
  const st = await driver.stat(blobKey(digest)).catch(() => null);
  if (!st || st.size > MAX_MANIFEST_BYTES) return null;
  const bytes = await readAllIfExists(driver, blobKey(digest)).catch(() => null);
  if (!bytes || sha256Digest(bytes) !== digest) return null;
  try {
    return { manifest: parseManifest(bytes), bytes };
  } catch {
    return null;
  }
}

/**
 * The one walk of a manifest tree (a list's children kept as blobs, theirs, …): hands out each
 * node once, breadth first; the caller reads it and adds what it names further. Callers that
 * read blobs and gc's walk of its in-memory index alike use it, so it neither reads nor awaits.
 */
export class TreeWalk<T = string> {
  private readonly queue: T[] = [];
  private head = 0;
  private readonly seen = new Set<string>();

  constructor(roots: Iterable<T> = [], private readonly key: (node: T) => string = String) {
    this.add(roots);
  }

  add(nodes: Iterable<T>): void {
    for (const n of nodes) if (!this.seen.has(this.key(n))) this.queue.push(n);
  }

  /** The next node not handed out yet, or undefined when the walk is over. */
  next(): T | undefined {
    while (this.head < this.queue.length) {
      const n = this.queue[this.head++]!;
      const k = this.key(n);
      if (this.seen.has(k)) continue;
      this.seen.add(k);
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head); // a long walk's handed-out nodes are not kept
        this.head = 0;
      }
      return n;
    }
    return undefined;
  }

  /** Nodes handed out so far (for callers that cap their reads). */
  get visited(): number {
    return this.seen.size;
  }
}

/**
 * Every blob a manifest needs, its children's (and theirs) included, without repeats. A child
 * that is not here is listed itself (so callers report it missing), its own blobs cannot be.
 */
export async function treeDigests(driver: Driver, m: Manifest): Promise<Descriptor[]> {
  const out = new Map<string, Descriptor>();
  const add = (cur: Manifest) => {
    for (const d of referencedDigests(cur)) if (!out.has(d.digest)) out.set(d.digest, d);
  };
  add(m);
  const walk = new TreeWalk(childManifests(m).map((c) => c.digest));
  for (let digest = walk.next(); digest; digest = walk.next()) {
    const child = await readBlobManifest(driver, digest);
    if (!child) continue;
    add(child.manifest);
    walk.add(childManifests(child.manifest).map((c) => c.digest));
  }
  return [...out.values()];
}

/**
 * A list stored under a repository (imported, or cached from an upstream): its children kept as
 * blobs become untagged manifests of that repository, so OCI clients find them under
 * /manifests/<digest> too, and gc keeps them while the list names them.
 */
export async function adoptChildren(store: ManifestStore, repo: Repo, m: Manifest): Promise<void> {
  for (const c of childManifests(m)) {
    const child = await readBlobManifest(store.driver, c.digest);
    if (child) await store.putUntagged(repo.host, repo.namespace, repo.model, child.bytes);
  }
}
