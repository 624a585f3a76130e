// The registry of fills in this process: one per digest (opened on first use, or resumed from
// the state a previous run left in the scratch folder), a lease in the store against a second
// process or replica (whose fill is then followed, fill-follow.ts), and blob sizes from upstream
// HEADs or from manifests that passed through. See fill.ts for how one fill brings a blob in.
import { Coalesce } from '../../coalesce.js';
import { open, rmdir, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fromFsError, RegistryError } from '../../errors.js';
import { digestHex } from '../../names.js';
import { fillLeaseKey } from '../../storage/layout.js';
import { acquireLease, keepLease, type Holder, type LeaseRecord } from '../../storage/lease.js';
import { MAX_MANIFEST_BYTES, referencedDigests } from '../manifests/manifest-format.js';
import { readBlobManifest } from '../manifests/manifest-tree.js';
import { Fill, upstreamToRegistryError, type FillDeps, type FillSource } from './fill.js';
import { FollowedFill, PeerSource, ScratchSource } from './fill-follow.js';
import { PeerFill, peerOrigin, peerSecret, type OwnedFills } from './fill-peer.js';
import { fillScratchDir, fillScratchFile, makeFillScratch, readFillState, scratchFills } from './fill-scratch.js';
import { IntervalSet } from './intervals.js';

export { FILL_TUNING, Fill, upstreamToRegistryError, type FillSource } from './fill.js';
export { FollowedFill } from './fill-follow.js';
export { discardOrphanFills } from './fill-scratch.js';

/** A fill run by this process, or one another process runs on the same data folder. */
export type BlobFill = Fill | FollowedFill;

export class Fills implements OwnedFills {
  /** This process in the leases it takes: a process on the same machine and scratch folder reads its files, others its URL. */
  private readonly self: Holder;
  private fills = new Map<string, BlobFill>();
  private opening = new Coalesce<string, BlobFill | null>();
  private sizes = new Map<string, { size: number; index: number }>();

  constructor(private readonly deps: FillDeps, private readonly leaseMs: number) {
    this.self = { owner: `${os.hostname()}/${randomUUID()}`, host: os.hostname(), scratch: path.resolve(deps.scratch) };
  }

  /** Where other processes reach this one (its internal endpoint), named in the leases taken from now on. */
  advertise(url: string): void {
    const u = new URL(url);
    if (u.hostname === '0.0.0.0' || u.hostname === '[::]') u.hostname = os.hostname(); // a wildcard address is no place to reach
    this.self.url = u.origin;
  }

  /** A fill this process runs now under its lease (for the internal endpoint). */
  owned(digest: string): Fill | undefined {
    const f = this.fills.get(digest);
    return f instanceof Fill && !f.error && !f.verified ? f : undefined;
  }

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
      return await this.opening.run(digest, async () => ((await this.deps.blobs.size(digest)) !== null ? null : this.open(digest, src)));
    }
  }

  /** Serve (or wait for) the fill another process runs; take it over if that process goes. */
  private async follow(digest: string, src: FillSource, owner: LeaseRecord): Promise<FollowedFill> {
    // Same machine and scratch folder: its files (this process's own path, never one read from the store).
    const local = owner.host === this.self.host && owner.scratch === this.self.scratch;
    const origin = peerOrigin(owner.url);
    const source = local ? new ScratchSource(this.deps.scratch, digest) : new PeerSource(origin ? new PeerFill(origin, digest, await peerSecret(this.deps.driver)) : null);
    const state = await source.state();
    const size = state?.size ?? (await this.size(digest, src)).size;
    const f = new FollowedFill(digest, size, owner, source, this.deps, async () => {
      if (this.fills.get(digest) === f) this.fills.delete(digest);
      return this.get(digest, src);
    });
    this.fills.set(digest, f);
    void f.settled.then(() => {
      if (f.verified && this.fills.get(digest) === f) this.fills.delete(digest);
    });
    this.deps.log.info({ digest, owner: owner.owner, via: local ? 'scratch' : origin ?? 'none (waiting for the blob)' }, 'another process is filling this blob; following it');
    return f;
  }

  private async open(digest: string, src: FillSource): Promise<BlobFill> {
    const taken = await acquireLease(this.deps.driver, fillLeaseKey(digest), this.self, this.leaseMs);
    if ('heldBy' in taken) return this.follow(digest, src, taken.heldBy);
    let running: Fill | undefined;
    const lease = keepLease(this.deps.driver, taken.lease, this.leaseMs, () => {
      this.deps.log.warn({ digest }, 'lost the lease of a fill (another process took it over): stopping it');
      running?.fail(new RegistryError('UNAVAILABLE', `another process took over the fill of blob ${digest}; pull again`));
    });
    try {
      const state = await readFillState(this.deps.scratch, digest);
      let size: number;
      let index = 0;
      if (state) {
        size = state.size;
        index = Math.max(0, src.upstreams.findIndex((u) => u.name === state.upstream));
      } else ({ size, index } = await this.size(digest, src));
      // A blob that cannot fit above the free-space floor is refused before a byte is written.
      await this.deps.space?.check(`blob ${digest}`, size - new IntervalSet(state?.have ?? []).total());
      await makeFillScratch(this.deps.scratch, digest);
      const dataPath = fillScratchFile(this.deps.scratch, digest, 'data');
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
      const fill = new Fill(digest, size, fh, have, src, index, this.deps, lease);
      running = fill;
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
      await rmdir(fillScratchDir(this.deps.scratch, digest)).catch(() => {}); // only when empty
      await lease.release(!(await readFillState(this.deps.scratch, digest)));
      throw fromFsError(e, `blob ${digest}`);
    }
  }

  /** Fills left by a previous run, with where they came from. */
  async pending(): Promise<Array<{ digest: string; namespace: string; model: string }>> {
    const out: Array<{ digest: string; namespace: string; model: string }> = [];
    for (const digest of await scratchFills(this.deps.scratch)) {
      const s = await readFillState(this.deps.scratch, digest);
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
