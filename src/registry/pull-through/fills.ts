// The registry of fills in this process: one per digest (opened on first use, or resumed from
// the state a previous run left), a lock file against a second process on the same data folder
// (whose fill is then followed, fill-follow.ts), and blob sizes from upstream HEADs or from
// manifests that passed through. See fill.ts for how one fill brings a blob in.
import { mkdir, open, readFile, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fromFsError, RegistryError } from '../../errors.js';
import { digestHex } from '../../names.js';
import type { Logger } from '../../log.js';
import { lockHolder, lockText, type FsDriver } from '../../storage/fs.js';
import { fillDir, fillKey, fillsDir } from '../../storage/layout.js';
import { MAX_MANIFEST_BYTES, referencedDigests } from '../manifests/manifest-format.js';
import { readBlobManifest } from '../manifests/manifest-tree.js';
import { Fill, upstreamToRegistryError, type FillDeps, type FillSource } from './fill.js';
import { FollowedFill, lockOwner, readFillState } from './fill-follow.js';
import { IntervalSet } from './intervals.js';

export { FILL_TUNING, Fill, upstreamToRegistryError, type FillSource } from './fill.js';
export { FollowedFill } from './fill-follow.js';

/**
 * At start-up, before this process fills anything: fill folders with no state and no live owner
 * (a process killed before it recorded any progress) can never be resumed, so their bytes go.
 */
export async function discardOrphanFills(driver: FsDriver, log: Logger): Promise<number> {
  let n = 0;
  for (const name of await driver.list(fillsDir())) {
    const m = /^sha256-([0-9a-f]{64})$/.exec(name);
    if (!m) continue;
    const digest = `sha256:${m[1]}`;
    if ((await readFillState(driver, digest)) || (await lockOwner(driver, digest)) !== null) continue;
    for (const f of ['data', 'state.json', 'lock'] as const) await driver.delete(fillKey(digest, f)).catch(() => {});
    await driver.delete(fillDir(digest)).catch(() => {});
    n++;
  }
  if (n > 0) log.info({ fills: n }, 'removed fills a stopped process left without any record of their progress');
  return n;
}

/** A fill run by this process, or one another process runs on the same data folder. */
export type BlobFill = Fill | FollowedFill;

export class Fills {
  private fills = new Map<string, BlobFill>();
  private opening = new Map<string, Promise<BlobFill | null>>();
  private sizes = new Map<string, { size: number; index: number }>();

  constructor(private readonly deps: FillDeps) {}

  /** Sizes learned from manifests that came through the cache: HEAD then needs no upstream round trip. */
  learnSizes(layers: Array<{ digest: string; size: number }>): void {
    if (this.sizes.size > 10_000) this.sizes.clear();
    for (const l of layers) if (!this.sizes.has(l.digest)) this.sizes.set(l.digest, { size: l.size, index: 0 });
  }

  /** The fill in progress for a digest, if any. */
  active(digest: string): BlobFill | undefined {
    const f = this.fills.get(digest);
    return f && !f.error && !f.verified ? f : undefined;
  }

  /** A blob's size from the first upstream that has it (HEAD only, no body). */
  async size(digest: string, src: FillSource): Promise<{ size: number; index: number }> {
    const fill = this.active(digest);
    if (fill) return { size: fill.size, index: 0 };
    const known = this.sizes.get(digest);
    if (known) return known;
    let last: unknown;
    for (const [index, up] of src.upstreams.entries()) {
      try {
        const size = await up.blobSize(src.namespace, src.model, digest);
        if (this.sizes.size > 10_000) this.sizes.clear();
        this.sizes.set(digest, { size, index });
        return { size, index };
      } catch (e) {
        last = e;
      }
    }
    throw upstreamToRegistryError(last ?? new RegistryError('BLOB_UNKNOWN', `blob unknown: ${digest} is not in this registry and no upstream is configured for ${src.namespace}`), 'blob');
  }

  /** The fill of a digest, started or resumed on first use; null when the blob is already published. */
  async get(digest: string, src: FillSource): Promise<BlobFill | null> {
    digestHex(digest);
    for (;;) {
      const f = this.fills.get(digest);
      if (f && !f.error) return f.verified ? null : f;
      if (f) {
        this.sizes.delete(digest); // a size learned from a manifest may have been the problem
        await f.closed;
        if (this.fills.get(digest) === f) this.fills.delete(digest);
        continue;
      }
      // Check and claim in one step (no await in between), so two requests never open two fills.
      let p = this.opening.get(digest);
      if (!p) {
        p = (async () => ((await this.deps.blobs.size(digest)) !== null ? null : this.open(digest, src)))()
          .finally(() => this.opening.delete(digest));
        this.opening.set(digest, p);
      }
      return await p;
    }
  }

  /** Take a fill's lock; the pid of the live process that holds it instead, if any. */
  private async lock(digest: string): Promise<number | null> {
    const p = this.deps.driver.path(fillKey(digest, 'lock'));
    await mkdir(path.dirname(p), { recursive: true });
    for (let i = 0; i < 2; i++) {
      try {
        await writeFile(p, lockText(), { flag: 'wx' });
        return null;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const text = await readFile(p, 'utf8').catch(() => '');
        if (text.trim() === lockText()) return null;
        const pid = lockHolder(text);
        if (pid !== null && pid !== process.pid) return pid;
        await unlink(p).catch(() => {});
      }
    }
    return null;
  }

  /** Serve (or wait for) the fill another process runs; take it over if that process goes. */
  private async follow(digest: string, src: FillSource, owner: number): Promise<FollowedFill> {
    const state = await readFillState(this.deps.driver, digest);
    const size = state?.size ?? (await this.size(digest, src)).size;
    const f = new FollowedFill(digest, size, owner, this.deps, async () => {
      if (this.fills.get(digest) === f) this.fills.delete(digest);
      return this.get(digest, src);
    });
    this.fills.set(digest, f);
    void f.settled.then(() => {
      if (f.verified && this.fills.get(digest) === f) this.fills.delete(digest);
    });
    this.deps.log.info({ digest, owner }, 'another process is filling this blob; following it');
    return f;
  }

  private async open(digest: string, src: FillSource): Promise<BlobFill> {
    const owner = await this.lock(digest);
    if (owner !== null) return this.follow(digest, src, owner);
    try {
      const state = await readFillState(this.deps.driver, digest);
      let size: number;
      let index = 0;
      if (state) {
        size = state.size;
        index = Math.max(0, src.upstreams.findIndex((u) => u.name === state.upstream));
      } else ({ size, index } = await this.size(digest, src));
      // A blob that cannot fit above the free-space floor is refused before a byte is written.
      await this.deps.space?.check(`blob ${digest}`, size - new IntervalSet(state?.have ?? []).total());
      const dataPath = this.deps.driver.path(fillKey(digest, 'data'));
      let fh: FileHandle;
      let have = state?.have ?? [];
      try {
        fh = await open(dataPath, 'r+');
        if ((await fh.stat()).size !== size) {
          await fh.truncate(size);
          have = [];
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        fh = await open(dataPath, 'w+', 0o644);
        await fh.truncate(size);
        have = [];
      }
      const fill = new Fill(digest, size, fh, have, src, index, this.deps);
      this.fills.set(digest, fill);
      // A list's child manifest fetched as a blob: its layers' sizes need no upstream round trip then.
      if (size <= MAX_MANIFEST_BYTES) {
        void fill.settled.then(async () => {
          const child = fill.verified ? await readBlobManifest(this.deps.driver, digest) : null;
          if (child) this.learnSizes(referencedDigests(child.manifest));
        }).catch(() => {});
      }
      this.deps.metrics?.fillsInFlight.inc();
      void fill.settled.then(() => this.deps.metrics?.fillsInFlight.dec());
      void fill.settled.then(() => {
        if (fill.verified && this.fills.get(digest) === fill) this.fills.delete(digest);
      });
      if (state && have.length) this.deps.log.info({ digest, size, filled: fill.filled() }, 'resuming a fill from upstream');
      fill.start();
      return fill;
    } catch (e) {
      await unlink(this.deps.driver.path(fillKey(digest, 'lock'))).catch(() => {});
      await this.deps.driver.delete(fillDir(digest)).catch(() => {}); // only when empty
      throw fromFsError(e, `blob ${digest}`);
    }
  }

  /** Fills left by a previous run, with where they came from. */
  async pending(): Promise<Array<{ digest: string; namespace: string; model: string }>> {
    const out: Array<{ digest: string; namespace: string; model: string }> = [];
    for (const name of await this.deps.driver.list(fillsDir())) {
      const m = /^sha256-([0-9a-f]{64})$/.exec(name);
      if (!m) continue;
      const s = await readFillState(this.deps.driver, `sha256:${m[1]}`);
      if (s) out.push({ digest: s.digest, namespace: s.namespace, model: s.model });
    }
    return out;
  }

  /** Stop every fill and record its progress (shutdown). */
  async stop(): Promise<void> {
    const all = [...this.fills.values()];
    for (const f of all) f.fail(new RegistryError('UNAVAILABLE', 'the registry is shutting down; pull again in a moment'));
    await Promise.all(all.map((f) => f.closed));
  }
}
