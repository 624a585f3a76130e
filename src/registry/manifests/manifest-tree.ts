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
 * Every blob a manifest needs, its children's (and theirs) included, without repeats. A child
 * that is not here is listed itself (so callers report it missing), its own blobs cannot be.
 */
export async function treeDigests(driver: Driver, m: Manifest): Promise<Descriptor[]> {
  const out = new Map<string, Descriptor>();
  const queue: Manifest[] = [m];
  const read = new Set<string>();
  while (queue.length) {
    const cur = queue.shift()!;
    for (const d of referencedDigests(cur)) if (!out.has(d.digest)) out.set(d.digest, d);
    for (const c of childManifests(cur)) {
      if (read.has(c.digest)) continue;
      read.add(c.digest);
      const child = await readBlobManifest(driver, c.digest);
      if (child) queue.push(child.manifest);
    }
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
