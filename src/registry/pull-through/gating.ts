// Version gating as registry.ollama.ai does it: a model whose config blob says `requires: X.Y.Z`
// is refused (412, plain text) to an ollama client older than that. Only clients that say
// `User-Agent: ollama/<version>` are gated; other tools, and ollama dev builds (version 0.0.0,
// which could be any commit), are not.
import type { BlobStore } from '../blobs/blobs.js';
import { childManifests, MAX_CONFIG_BYTES, parseManifest, type Manifest } from '../manifests/manifest-format.js';
import { readBlobManifest } from '../manifests/manifest-tree.js';

/** registry.ollama.ai's body, byte for byte: the stock client prints it after "412: ". */
export const GATED_BODY =
  '\nThe model you are attempting to pull requires a newer version of Ollama.\n\nPlease download the latest version at:\n\n\thttps://ollama.com/download\n';

// Config blobs are a few hundred bytes; anything much bigger is not an ollama config.
const MAX_CACHED = 10_000;

interface Version {
  nums: [number, number, number];
  pre: string;
}

export function parseVersion(v: string): Version | null {
  const m = /^v?(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]*)?$/.exec(v.trim());
  if (!m) return null;
  return { nums: [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)], pre: m[4] ?? '' };
}

/** <0, 0, >0 like a comparator; a pre-release (0.12.4-rc1) sorts before its release. */
export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) if (a.nums[i] !== b.nums[i]) return a.nums[i]! - b.nums[i]!;
  if (a.pre === b.pre) return 0;
  if (!a.pre) return 1;
  if (!b.pre) return -1;
  return a.pre < b.pre ? -1 : 1;
}

/** The ollama version in a User-Agent (`ollama/0.12.3 (amd64 linux) Go/go1.24.1`), or null. */
export function ollamaClientVersion(userAgent: string | undefined): Version | null {
  const m = /^ollama\/(\S+)/i.exec(userAgent ?? '');
  return m ? parseVersion(m[1]!) : null;
}

/** `requires` of each config blob, by digest (blobs never change, so entries never go stale). */
const requiresByDigest = new Map<string, string | null>();

async function configRequires(blobs: BlobStore, digest: string): Promise<string | null | undefined> {
  if (requiresByDigest.has(digest)) return requiresByDigest.get(digest);
  const size = await blobs.size(digest);
  // Not here (yet): decide nothing and cache nothing.
  if (size === null) return undefined;
  let requires: string | null = null;
  if (size <= MAX_CONFIG_BYTES) {
    const chunks: Buffer[] = [];
    for await (const c of await blobs.open(digest)) chunks.push(c as Buffer);
    try {
      const cfg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { requires?: unknown };
      if (typeof cfg.requires === 'string' && cfg.requires.trim() !== '') requires = cfg.requires.trim();
    } catch {
      /* not JSON: not an ollama config, nothing to gate on */
    }
  }
  if (requiresByDigest.size >= MAX_CACHED) requiresByDigest.delete(requiresByDigest.keys().next().value!);
  requiresByDigest.set(digest, requires);
  return requires;
}

/**
 * The minimum version a client lacks to use this manifest, or null when it may have it.
 * Never throws for a malformed manifest or config: gating is advice, not validation.
 */
export async function versionGate(blobs: BlobStore, manifestBytes: Buffer, userAgent: string | undefined): Promise<string | null> {
  const client = ollamaClientVersion(userAgent);
  if (!client || (client.nums.every((n) => n === 0) && !client.pre)) return null;
  let manifest: Manifest;
  try {
    manifest = parseManifest(manifestBytes);
  } catch {
    return null;
  }
  if (manifest.kind === 'image') return lacking(client, await requiresOf(blobs, manifest));
  // A list (ollama's): the client picks a child, so it is refused only when it can use none of
  // them; it is told the lowest version that would do.
  let lowest: string | null = null;
  for (const c of childManifests(manifest)) {
    const child = await readBlobManifest(blobs.driver, c.digest);
    if (!child) return null;
    const need = lacking(client, await requiresOf(blobs, child.manifest));
    if (!need) return null;
    if (!lowest || compareVersions(parseVersion(need)!, parseVersion(lowest)!) < 0) lowest = need;
  }
  return lowest;
}

async function requiresOf(blobs: BlobStore, m: Manifest): Promise<string | null> {
  return m.config ? (await configRequires(blobs, m.config.digest)) ?? null : null;
}

/** `requires` when the client is older than it, else null. */
function lacking(client: Version, requires: string | null): string | null {
  const need = requires ? parseVersion(requires) : null;
  return need && compareVersions(client, need) < 0 ? requires : null;
}
