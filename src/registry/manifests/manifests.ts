// Manifests by host/namespace/model/tag, stored verbatim in ollama's layout.
//
// A request names only <namespace>/<model>; which host folder answers is decided here, by one
// rule: host folders are searched in the configured order, then every other host folder in byte
// order of its name; the first folder holding the repository (and, for a tag, that tag) wins.
// The configured order starts with the push host (`pushHost`, default ollama-registry.local), the
// folder every push is stored in, so a pushed model wins over a cached or imported one of the same
// name; then `hosts` (default registry.ollama.ai). Names match case-insensitively; spelling is
// preserved, and a push to an existing name in the push host keeps that name's first spelling.
import { Coalesce } from '../../coalesce.js';
import { RegistryError } from '../../errors.js';
import { digestFromBlobFileName, isDigest, isValidPart } from '../../names.js';
import { readAllIfExists, type Driver, type Stat } from '../../storage/driver.js';
import { blobKey, MANIFESTS, manifestDir, manifestKey, UNTAGGED, untaggedDir, untaggedKey } from '../../storage/layout.js';
import { sha256Digest } from '../blobs/hashing.js';
import { manifestContentType } from './manifest-format.js';

const RECENT_MS = 1000;
const RECENT_MAX = 1000;

export interface ManifestRef {
  host: string;
  namespace: string;
  model: string;
  tag: string;
}

export interface StoredManifest extends ManifestRef {
  bytes: Buffer;
  digest: string;
  mediaType: string;
  mtimeMs: number;
  /** Stored by digest only (`tag` is then the digest): not a tag of an ollama name. */
  untagged?: true;
}

export interface Repo {
  host: string;
  namespace: string;
  model: string;
}

export class ManifestStore {
  private digests = new Map<string, { mtimeMs: number; size: number; digest: string }>();
  /** Awaited after a manifest file is written, deleted, or first seen changed (keeps blob access current). */
  onChange?: (key: string) => Promise<void>;

  constructor(readonly driver: Driver, private readonly hostOrder: string[]) {}

  /** Host folders in lookup order. */
  async hosts(): Promise<string[]> {
    const present = (await this.driver.list(MANIFESTS)).filter((h) => isValidPart('host', h));
    const first = this.hostOrder.filter((h) => present.includes(h));
    return [...first, ...present.filter((h) => !first.includes(h))];
  }

  /** Matching child names of a folder: the exact spelling first, then case-folded matches. */
  private async match(dir: string, name: string, kind: 'namespace' | 'model' | 'tag'): Promise<string[]> {
    const entries = (await this.driver.list(dir)).filter((e) => isValidPart(kind, e));
    const folded = name.toLowerCase();
    const hits = entries.filter((e) => e.toLowerCase() === folded);
    return hits.includes(name) ? [name, ...hits.filter((h) => h !== name)] : hits;
  }

  /** Every host's spelling of a repository, in lookup order (in the untagged tree with `untagged`; in host folder `host` only with one). */
  async findRepos(namespace: string, model: string, untagged = false, host?: string): Promise<Repo[]> {
    const out: Repo[] = [];
    const dir = untagged ? untaggedDir : manifestDir;
    const all = untagged ? (await this.driver.list(UNTAGGED)).filter((h) => isValidPart('host', h)) : await this.hosts();
    const hosts = host === undefined ? all : all.filter((h) => h.toLowerCase() === host.toLowerCase());
    for (const host of hosts) {
      for (const ns of await this.match(dir(host), namespace, 'namespace')) {
        for (const m of await this.match(dir(host, ns), model, 'model')) {
          out.push({ host, namespace: ns, model: m });
        }
      }
    }
    return out;
  }

  /** A manifest stored by digest only in a repository (its bytes are the blob of that digest). */
  private async findUntagged(namespace: string, model: string, digest: string, host?: string): Promise<StoredManifest | null> {
    for (const repo of await this.findRepos(namespace, model, true, host)) {
      const st = await this.driver.stat(untaggedKey(repo.host, repo.namespace, repo.model, digest));
      if (!st) continue;
      const bytes = await readAllIfExists(this.driver, blobKey(digest));
      if (bytes && sha256Digest(bytes) === digest) {
        return { ...repo, tag: digest, untagged: true, bytes, digest, mediaType: manifestContentType(bytes), mtimeMs: st.mtimeMs };
      }
    }
    return null;
  }

  /** Digests of the manifests stored by digest only in a repository (every spelling). */
  async untaggedOf(namespace: string, model: string): Promise<string[]> {
    const out = new Set<string>();
    for (const repo of await this.findRepos(namespace, model, true)) {
      for (const f of await this.driver.list(untaggedDir(repo.host, repo.namespace, repo.model))) {
        const d = digestFromBlobFileName(f);
        if (d && f.startsWith('sha256-')) out.add(d);
      }
    }
    return [...out];
  }

  /**
   * Store a manifest by digest only, in `host`: the bytes become the blob of their digest (a
   * manifest is content-addressed, and blobs/ stays an ollama models folder), and a marker
   * file says which repository holds it. Pushing it again renews the marker's time.
   */
  async putUntagged(host: string, namespace: string, model: string, bytes: Buffer): Promise<{ digest: string }> {
    const digest = sha256Digest(bytes);
    const st = await this.driver.stat(blobKey(digest));
    if (!st || st.size !== bytes.length) await this.driver.write(blobKey(digest), bytes);
    const ns = (await this.match(untaggedDir(host), namespace, 'namespace'))[0] ?? namespace;
    const m = (await this.match(untaggedDir(host, ns), model, 'model'))[0] ?? model;
    await this.driver.write(untaggedKey(host, ns, m, digest), Buffer.alloc(0));
    this.forgetRecent();
    return { digest };
  }

  private async load(ref: ManifestRef): Promise<StoredManifest | null> {
    const key = manifestKey(ref.host, ref.namespace, ref.model, ref.tag);
    const st = await this.driver.stat(key);
    if (!st) return null;
    const bytes = await readAllIfExists(this.driver, key);
    if (!bytes) return null;
    let cached = this.digests.get(key);
    if (!cached || cached.mtimeMs !== st.mtimeMs || cached.size !== bytes.length) {
      cached = { mtimeMs: st.mtimeMs, size: bytes.length, digest: sha256Digest(bytes) };
      this.digests.set(key, cached);
      await this.onChange?.(key);
    }
    return { ...ref, bytes, digest: cached.digest, mediaType: manifestContentType(bytes), mtimeMs: st.mtimeMs };
  }

  /** Find a manifest by tag or digest (in host folder `host` only, with one); null when no host folder has it. */
  async find(namespace: string, model: string, reference: string, host?: string): Promise<StoredManifest | null> {
    const repos = await this.findRepos(namespace, model, false, host);
    if (isDigest(reference)) {
      for (const repo of repos) {
        for (const tag of await this.tagsOf(repo)) {
          const m = await this.load({ ...repo, tag });
          if (m && m.digest === reference) return m;
        }
      }
      return this.findUntagged(namespace, model, reference, host);
    }
    for (const repo of repos) {
      for (const tag of await this.match(manifestDir(repo.host, repo.namespace, repo.model), reference, 'tag')) {
        const m = await this.load({ ...repo, tag });
        if (m) return m;
      }
    }
    return null;
  }

  /** A tag in one host folder only (case-insensitive, exact spelling first); null when absent. */
  async findIn(host: string, namespace: string, model: string, tag: string): Promise<StoredManifest | null> {
    const hosts = (await this.driver.list(MANIFESTS)).filter((h) => h.toLowerCase() === host.toLowerCase() && isValidPart('host', h));
    for (const h of hosts) {
      for (const ns of await this.match(manifestDir(h), namespace, 'namespace')) {
        for (const m of await this.match(manifestDir(h, ns), model, 'model')) {
          for (const t of await this.match(manifestDir(h, ns, m), tag, 'tag')) {
            const found = await this.load({ host: h, namespace: ns, model: m, tag: t });
            if (found) return found;
          }
        }
      }
    }
    return null;
  }

  /**
   * Recently resolved manifests by the name as requested. A full lookup costs ~9 file system
   * calls (4 readdir, stat, open/fstat/read/close) through libuv's thread pool; a hit costs one
   * stat (bytes rewritten in place show at once). The name is resolved again after RECENT_MS,
   * so folders created by other processes (a new host or spelling) show within that time.
   */
  private recent = new Map<string, { m: StoredManifest; at: number }>();
  private generation = 0;

  private forgetRecent(): void {
    this.recent.clear();
    this.generation++;
  }

  /** Concurrent requests for one tag share the stat in flight (under load most requests do). */
  private stats = new Coalesce<string, Stat | null>();

  private statShared(key: string): Promise<Stat | null> {
    return this.stats.run(key, () => this.driver.stat(key));
  }

  async get(namespace: string, model: string, reference: string, host?: string): Promise<StoredManifest> {
    const k = `${host ?? ''}/${namespace}/${model}/${reference}`;
    const now = Date.now();
    const hit = this.recent.get(k);
    if (hit && now - hit.at < RECENT_MS) {
      // One stat instead of a lookup: a tag rewritten in place (ollama, another registry process) shows at once.
      const m = hit.m;
      const st = await this.statShared(m.untagged ? untaggedKey(m.host, m.namespace, m.model, m.digest) : manifestKey(m.host, m.namespace, m.model, m.tag));
      if (m.untagged && st) return m;
      if (st && st.mtimeMs === hit.m.mtimeMs && st.size === hit.m.bytes.length) return hit.m;
    }
    const gen = this.generation;
    const m = await this.find(namespace, model, reference, host);
    if (m && gen === this.generation) { // not when a put/delete ran meanwhile: m may be the old bytes
      if (this.recent.size >= RECENT_MAX) this.recent.clear();
      this.recent.set(k, { m, at: now });
    }
    if (!m) {
      const sep = isDigest(reference) ? '@' : ':';
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${namespace}/${model}${sep}${reference} is not in this registry`);
    }
    return m;
  }

  private async tagsOf(repo: Repo): Promise<string[]> {
    return (await this.driver.list(manifestDir(repo.host, repo.namespace, repo.model))).filter((t) => isValidPart('tag', t));
  }

  /** Tags of a repository across host folders (first spelling wins), sorted; null if unknown. */
  async tags(namespace: string, model: string): Promise<string[] | null> {
    const repos = await this.findRepos(namespace, model);
    if (repos.length === 0) return null;
    const byFold = new Map<string, string>();
    for (const repo of repos) {
      for (const t of await this.tagsOf(repo)) if (!byFold.has(t.toLowerCase())) byFold.set(t.toLowerCase(), t);
    }
    return [...byFold.values()].sort();
  }

  /** Storage keys of every tag of a repository, in every host folder. */
  async keysOf(namespace: string, model: string): Promise<string[]> {
    const out: string[] = [];
    for (const repo of await this.findRepos(namespace, model)) {
      for (const tag of await this.tagsOf(repo)) out.push(manifestKey(repo.host, repo.namespace, repo.model, tag));
    }
    return out;
  }

  /** Every stored manifest reference, host by host in lookup order. */
  async *all(): AsyncGenerator<ManifestRef> {
    for (const host of await this.hosts()) {
      for (const namespace of (await this.driver.list(manifestDir(host))).filter((n) => isValidPart('namespace', n))) {
        for (const model of (await this.driver.list(manifestDir(host, namespace))).filter((n) => isValidPart('model', n))) {
          for (const tag of await this.tagsOf({ host, namespace, model })) {
            const st = await this.driver.stat(manifestKey(host, namespace, model, tag));
            if (st) yield { host, namespace, model, tag };
          }
        }
      }
    }
  }

  /** `namespace/model` of every repository, case-folded duplicates merged, sorted. */
  async repositories(): Promise<string[]> {
    const byFold = new Map<string, string>();
    for await (const r of this.all()) {
      const name = `${r.namespace}/${r.model}`;
      if (!byFold.has(name.toLowerCase())) byFold.set(name.toLowerCase(), name);
    }
    return [...byFold.values()].sort();
  }

  async read(ref: ManifestRef): Promise<StoredManifest | null> {
    return this.load(ref);
  }

  /** Store manifest bytes verbatim (atomically). */
  async put(ref: ManifestRef, bytes: Buffer): Promise<{ digest: string }> {
    const key = manifestKey(ref.host, ref.namespace, ref.model, ref.tag);
    await this.driver.write(key, bytes);
    this.forgetRecent();
    await this.onChange?.(key);
    return { digest: sha256Digest(bytes) };
  }

  /**
   * Where a push of namespace/model:tag goes in `host`: the spelling already there for each part
   * (case-folded match), else the spelling given.
   */
  async refForWrite(host: string, namespace: string, model: string, tag: string): Promise<ManifestRef> {
    const ns = (await this.match(manifestDir(host), namespace, 'namespace'))[0] ?? namespace;
    const m = (await this.match(manifestDir(host, ns), model, 'model'))[0] ?? model;
    const t = (await this.match(manifestDir(host, ns, m), tag, 'tag'))[0] ?? tag;
    return { host, namespace: ns, model: m, tag: t };
  }

  /**
   * Remove a reference in every host folder: a tag (all its spellings), or every tag whose
   * manifest has the given digest. Returns what was removed.
   */
  async deleteReference(namespace: string, model: string, reference: string): Promise<ManifestRef[]> {
    const gone: ManifestRef[] = [];
    for (const repo of await this.findRepos(namespace, model)) {
      const tags = isDigest(reference)
        ? await this.tagsOf(repo)
        : await this.match(manifestDir(repo.host, repo.namespace, repo.model), reference, 'tag');
      for (const tag of tags) {
        const ref = { ...repo, tag };
        if (isDigest(reference) && (await this.load(ref))?.digest !== reference) continue;
        await this.delete(ref);
        gone.push(ref);
      }
    }
    if (isDigest(reference)) {
      for (const repo of await this.findRepos(namespace, model, true)) {
        const key = untaggedKey(repo.host, repo.namespace, repo.model, reference);
        if (!(await this.driver.stat(key))) continue;
        await this.driver.delete(key);
        await this.driver.delete(untaggedDir(repo.host, repo.namespace, repo.model));
        await this.driver.delete(untaggedDir(repo.host, repo.namespace));
        gone.push({ ...repo, tag: reference });
      }
      this.forgetRecent();
    }
    return gone;
  }

  /** Remove a tag, then its model and namespace folders when they became empty. */
  async delete(ref: ManifestRef): Promise<void> {
    const key = manifestKey(ref.host, ref.namespace, ref.model, ref.tag);
    await this.driver.delete(key);
    this.forgetRecent();
    await this.onChange?.(key);
    await this.driver.delete(manifestDir(ref.host, ref.namespace, ref.model));
    await this.driver.delete(manifestDir(ref.host, ref.namespace));
  }
}
