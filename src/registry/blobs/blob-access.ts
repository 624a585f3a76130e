// Which repositories a blob can be read through. Blobs are shared by every repository on disk,
// but a read names a repository and rights are decided by that name, so a blob is served through
// a repository only when a manifest of that repository references it (any host folder: every
// one of them answers the name, by tag or by digest), or when a grant says so: the requester put
// it there (an upload or mount no manifest names yet), or a manifest of that repository fetched
// from an upstream and not stored (by digest) names it.
//
// Kept in memory: digest → repositories, from the manifest index. It follows this process's
// manifest writes and deletes at once (ManifestStore.onChange, also called when a read finds a
// file changed). Other processes' writes (pull, import) are looked for before answering "not
// here": the requested repository's own manifest files are re-checked (a few readdirs and a stat
// per tag, like a manifest lookup; at most once a second per repository). Their deletes and
// rewrites (rm, gc) are found by a walk of the whole tree, in the background every few seconds
// while requests come.
import { Coalesce } from '../../coalesce.js';
import type { Driver } from '../../storage/driver.js';
import { ManifestIndex, type ManifestEntry } from '../manifests/manifest-index.js';
import { TreeWalk } from '../manifests/manifest-tree.js';

const RECHECK_MS = 1000;
const RECHECKS_MAX = 10_000;
const BACKGROUND_WALK_MS = 5000;
const GRANTS_MAX = 100_000;
/** Child manifests read per miss at most (a list of lists of lists is not a reason to read forever). */
const TREE_READS_MAX = 256;

export interface RepoName {
  namespace: string;
  model: string;
}

/** The subject of a grant for everyone who may pull the repository. */
export const EVERYONE = '*';

function repoKey(r: RepoName): string {
  return `${r.namespace}/${r.model}`.toLowerCase();
}

export class BlobAccess {
  private readonly index: ManifestIndex;
  /** digest → repository key (lower case) → how many manifest files of it reference the digest. */
  private byDigest = new Map<string, Map<string, number>>();
  /** repository key → its spelling, for rights and policy checks. */
  private names = new Map<string, RepoName>();
  /** digest → `${subject}\n${repository key}` → expiry (ms). */
  private grants = new Map<string, Map<string, number>>();
  private grantCount = 0;
  private started: Promise<void> | null = null;
  private walking = new Coalesce<'walk', void>();
  /** When the last finished walk began. */
  private walkedAt = -Infinity;
  /** Repository key → the last re-read of its manifest files after a miss. */
  private rechecks = new Map<string, { at: number; done: Promise<void> }>();
  /** The last re-read of the saved grants. */
  private reloaded?: { at: number; done: Promise<void> };
  /** repository key → child manifest digest (a list's child, a subject) → how many manifests name it. */
  private childrenOf = new Map<string, Map<string, number>>();
  /** Index updates run one at a time, so a walk and a single-file update never interleave. */
  private queue: Promise<void> = Promise.resolve();

  /** `keysOf`: the storage keys of a repository's manifest files (every host folder, every tag). */
  constructor(driver: Driver, private readonly opts: {
    grantTtlMs: number;
    keysOf: (repo: RepoName) => Promise<string[]>;
    /** Grants that outlive a restart (blobs committed by pushes still in progress), loaded once at start. */
    saved?: () => Promise<Array<{ subject: string; repo: RepoName; digest: string; sinceMs: number }>>;
    onError?: (e: Error) => void;
  }) {
    this.index = new ManifestIndex(driver, (prev, next) => {
      this.count(prev, -1);
      this.count(next, 1);
    });
  }

  private count(e: ManifestEntry | undefined, by: 1 | -1): void {
    if (!e?.ref) return; // names the registry never serves
    const repo = repoKey(e.ref);
    if (!this.names.has(repo)) this.names.set(repo, { namespace: e.ref.namespace, model: e.ref.model });
    const kids = this.childrenOf.get(repo) ?? new Map<string, number>();
    // A list's children only: a `subject` may name any digest unchecked, so it opens no tree.
    for (const c of (e.children ?? []).filter((d) => e.blobs.some((b) => b.digest === d))) {
      const n = (kids.get(c) ?? 0) + by;
      if (n > 0) kids.set(c, n);
      else kids.delete(c);
    }
    if (kids.size) this.childrenOf.set(repo, kids);
    else this.childrenOf.delete(repo);
    for (const { digest } of e.blobs) {
      let m = this.byDigest.get(digest);
      if (!m) {
        if (by < 0) continue;
        this.byDigest.set(digest, (m = new Map()));
      }
      const n = (m.get(repo) ?? 0) + by;
      if (n > 0) m.set(repo, n);
      else m.delete(repo);
      if (m.size === 0) this.byDigest.delete(digest);
    }
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => {});
    return p;
  }

  /** Walk the whole manifests tree (one walk at a time, shared by whoever waits for it). */
  private walk(): Promise<void> {
    return this.walking.run('walk', () => {
      const at = Date.now();
      return this.serial(() => this.index.refresh()).then(() => { this.walkedAt = at; });
    });
  }

  /** Take the saved grants in (commit markers in the store; another replica's pushes among them). */
  private async loadSaved(): Promise<void> {
    // Without them a pusher uploads again after a restart: worth a log line, not a failed read.
    const saved = await this.opts.saved?.().catch((e: unknown) => { this.opts.onError?.(e as Error); return []; });
    for (const g of saved ?? []) this.grant(g.subject, g.repo, [g.digest], g.sinceMs);
  }

  /**
   * Read the saved grants again, at most once a second (shared by the callers meanwhile): a push
   * whose blobs another replica committed finds them before its manifest is refused.
   */
  reloadSaved(): Promise<void> {
    if (this.reloaded && Date.now() - this.reloaded.at < RECHECK_MS) return this.reloaded.done;
    const done = this.loadSaved();
    this.reloaded = { at: Date.now(), done };
    return done;
  }

  /** Load the index (the first call walks the tree; later calls return at once). */
  start(): Promise<void> {
    this.started ??= (async () => {
      await this.loadSaved();
      await this.walk();
    })().catch((e: unknown) => {
      this.started = null;
      throw e;
    });
    return this.started;
  }

  private async current(): Promise<void> {
    await this.start();
    if (Date.now() - this.walkedAt > BACKGROUND_WALK_MS && this.walking.size === 0) {
      this.walk().catch((e: unknown) => this.opts.onError?.(e as Error));
    }
  }

  /** A manifest file (storage key) was written, deleted or found changed by this process. */
  async changed(key: string): Promise<void> {
    if (!this.started) return; // the first walk reads it
    await this.start();
    await this.serial(() => this.index.refreshKey(key));
  }

  private visible(digest: string, repo: string, subject: string): boolean {
    if (this.byDigest.get(digest)?.has(repo)) return true;
    const g = this.grants.get(digest);
    if (!g) return false;
    const now = Date.now();
    return (g.get(`${subject}\n${repo}`) ?? 0) > now || (g.get(`${EVERYONE}\n${repo}`) ?? 0) > now;
  }

  /** Whether `subject` reaches the blob through this repository (its rights are checked apart). */
  async through(digest: string, repo: RepoName, subject: string): Promise<boolean> {
    await this.current();
    const key = repoKey(repo);
    if (this.visible(digest, key, subject)) return true;
    await this.recheck(repo, key);
    return this.visible(digest, key, subject) || (await this.inTree(digest, key));
  }

  /**
   * Whether a child manifest of this repository's lists (kept as a blob: ollama's list, an OCI
   * index's children pushed by digest) names the blob, at any depth. Read only on a miss.
   */
  private async inTree(digest: string, repo: string): Promise<boolean> {
    const walk = new TreeWalk(this.childrenOf.get(repo)?.keys());
    for (let child = walk.next(); child && walk.visited <= TREE_READS_MAX; child = walk.next()) {
      if (child === digest) return true;
      // The index's reading (its walk read most already). Its subject is not followed: it may name any digest unchecked.
      const names = await this.index.blobNames(child);
      if (!names) continue;
      if (names.refs.includes(digest)) return true;
      walk.add(names.lists);
    }
    return false;
  }

  /**
   * Maybe a manifest another process just wrote (a pull, an import): re-read this repository's
   * files. At most once a second per repository, so a flood of misses costs no more.
   */
  private recheck(repo: RepoName, key: string): Promise<void> {
    const last = this.rechecks.get(key);
    if (last && Date.now() - last.at < RECHECK_MS) return last.done;
    if (this.rechecks.size >= RECHECKS_MAX) this.rechecks.clear();
    const done = this.opts.keysOf(repo).then((keys) => this.serial(async () => {
      for (const k of keys) await this.index.refreshKey(k);
    }));
    this.rechecks.set(key, { at: Date.now(), done });
    return done;
  }

  /**
   * Every repository through which `subject` reaches the blob (rights apart). Asked by pushes
   * (mounts, manifest PUTs): a manifest another process wrote in the last seconds may be missing,
   * which costs an upload of bytes the registry has, never a wrong answer.
   */
  async repositories(digest: string, subject: string): Promise<RepoName[]> {
    await this.current();
    const keys = new Set(this.byDigest.get(digest)?.keys());
    const now = Date.now();
    for (const [k, until] of this.grants.get(digest) ?? []) {
      const i = k.indexOf('\n');
      const who = k.slice(0, i);
      if (until > now && (who === subject || who === EVERYONE)) keys.add(k.slice(i + 1));
    }
    return [...keys].flatMap((k) => this.names.get(k) ?? []);
  }

  /** Let `subject` (or EVERYONE) reach these blobs through the repository for a while. */
  grant(subject: string, repo: RepoName, digests: string[], sinceMs = Date.now()): void {
    const key = repoKey(repo);
    if (!this.names.has(key)) this.names.set(key, { namespace: repo.namespace, model: repo.model });
    const until = sinceMs + this.opts.grantTtlMs;
    if (until <= Date.now()) return;
    for (const d of digests) {
      let g = this.grants.get(d);
      if (!g) this.grants.set(d, (g = new Map()));
      if (!g.has(`${subject}\n${key}`)) this.grantCount++;
      g.set(`${subject}\n${key}`, until);
    }
    if (this.grantCount > GRANTS_MAX) this.prune();
  }

  /** Drop expired grants; when still too many, the oldest digests' grants. */
  private prune(): void {
    const now = Date.now();
    for (const [d, g] of this.grants) {
      for (const [k, until] of g) {
        if (until <= now) {
          g.delete(k);
          this.grantCount--;
        }
      }
      if (g.size === 0) this.grants.delete(d);
    }
    for (const [d, g] of this.grants) {
      if (this.grantCount <= GRANTS_MAX * 0.9) break;
      this.grantCount -= g.size;
      this.grants.delete(d);
    }
  }
}
