// Following a fill that another process runs (`ollama-registry pull` while `serve` runs, or
// another replica on the same store). Its bytes are served as the owner says they are there: on
// the same machine (same scratch folder) from its staging files, whose state.json is written after
// a datasync; elsewhere from its internal endpoint (fill-peer.ts); and the published blob once it
// lands. When the owner's lease goes (expired: the owner died; or released without publishing),
// this process takes the fill over, on the same machine resuming from the same staging files,
// and the readers carry on with it.
import { open, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { RegistryError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Driver } from '../../storage/driver.js';
import { fillLeaseKey } from '../../storage/layout.js';
import { leaseHolder, type LeaseRecord } from '../../storage/lease.js';
import type { BlobStore } from '../blobs/blobs.js';
import { Fill } from './fill.js';
import type { PeerFill } from './fill-peer.js';
import { copyFill, NO_SLICES, type ReadableFill, type Slices } from './fill-reader.js';
import { fillScratchFile, readFillState } from './fill-scratch.js';
import { IntervalSet } from './intervals.js';

const POLL_MS = 250;
const LEASE_CHECK_MS = 1000; // the lease is read at most this often (a store request on S3)

/** Where a follower reads the owner's bytes. */
export interface FollowSource {
  /** The same staging files a take-over resumes from (same machine), rather than a copy elsewhere. */
  readonly local: boolean;
  /** The owner's recorded progress, or null when it cannot tell now. */
  state(): Promise<{ size: number; have: Array<[number, number]> } | null>;
  /** Bytes at `pos`; 0 when they cannot be read now. */
  readAt(buf: Buffer, len: number, pos: number): Promise<number>;
  /** A reader waits for byte `pos`: tell the owner, where it can be told. */
  want(pos: number): void;
  close(): void;
}

/** The owner's staging files in the scratch folder this process shares with it. */
export class ScratchSource implements FollowSource {
  readonly local = true;
  private fh?: FileHandle;
  private closed = false;

  constructor(private readonly scratch: string, private readonly digest: string) {}

  async state(): Promise<{ size: number; have: Array<[number, number]> } | null> {
    const st = await readFillState(this.scratch, this.digest);
    if (!st) return null;
    this.fh ??= await open(fillScratchFile(this.scratch, this.digest, 'data'), 'r').catch(() => undefined);
    if (this.closed) this.close();
    return this.fh ? st : null;
  }

  async readAt(buf: Buffer, len: number, pos: number): Promise<number> {
    return this.fh ? (await this.fh.read(buf, 0, len, pos)).bytesRead : 0;
  }

  want(): void {} // the owner decides what it fetches

  close(): void {
    this.closed = true;
    const fh = this.fh;
    this.fh = undefined;
    void fh?.close().catch(() => {});
  }
}

/** The owner's internal endpoint, on another machine (or another scratch folder). */
export class PeerSource implements FollowSource {
  readonly local = false;
  private asked = new Set<number>(); // positions already asked for: each reader's wait is told once

  constructor(private readonly peer: PeerFill | null) {}

  async state(): Promise<{ size: number; have: Array<[number, number]> } | null> {
    return this.peer ? this.peer.state().catch(() => null) : null;
  }

  async readAt(buf: Buffer, len: number, pos: number): Promise<number> {
    return this.peer ? this.peer.readAt(buf, len, pos).catch(() => 0) : 0;
  }

  want(pos: number): void {
    if (!this.peer || this.asked.has(pos) || this.asked.size >= 256) return;
    this.asked.add(pos);
    this.peer.want(pos);
  }

  close(): void {}
}

/** Every byte of `b` is in `a`. */
function covers(a: IntervalSet, b: IntervalSet): boolean {
  return b.toJSON().every(([s, e]) => a.runEnd(s) >= e);
}

export interface FollowDeps { driver: Driver; blobs: BlobStore; log: Logger }

export class FollowedFill implements ReadableFill {
  readonly settled: Promise<void>;
  readonly closed: Promise<void>;
  private settle!: () => void;
  private close!: () => void;
  private err?: Error;
  private published = false;
  private have = new IntervalSet();
  private local?: Fill | FollowedFill;
  private readers = 0;
  private leaseCheckedAt = 0;
  private waiters: Array<() => void> = [];
  private polling = false;
  private lanes = 0;
  private timer: NodeJS.Timeout;

  constructor(readonly digest: string, readonly size: number, readonly owner: LeaseRecord, private readonly source: FollowSource,
    private readonly deps: FollowDeps, private readonly takeOver: () => Promise<Fill | FollowedFill | null>) {
    this.settled = new Promise((r) => (this.settle = r));
    this.closed = new Promise((r) => (this.close = r));
    // Not unref'd: a `pull` waiting on this must stay alive.
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    void this.poll();
  }

  get error(): Error | undefined {
    return this.local ? this.local.error : this.err;
  }

  get verified(): boolean {
    return this.local ? this.local.verified : this.published;
  }

  /** Bytes this process received from upstreams for this blob (after a take-over). */
  get received(): number {
    return this.local?.received ?? 0;
  }

  filled(): number {
    return this.local ? this.local.filled() : this.published ? this.size : this.have.total();
  }

  parallel(n: number): void {
    this.lanes = n;
    this.local?.parallel(n);
  }

  copyTo(out: Writable, start: number, end: number): Promise<void> {
    return copyFill(this, this.deps.blobs, out, start, end);
  }

  readableEnd(pos: number): number {
    return this.local ? this.local.readableEnd(pos) : this.have.runEnd(pos);
  }

  memory(pos: number, end: number, max: number): Slices {
    return this.local ? this.local.memory(pos, end, max) : NO_SLICES;
  }

  async readAt(buf: Buffer, len: number, pos: number): Promise<number> {
    if (this.local) return this.local.readAt(buf, len, pos);
    const n = await this.source.readAt(buf, len, pos);
    if (n <= 0 && this.have.total() > 0) {
      // The owner cannot give what it said it had (gone?): nothing is readable until it answers again or the fill is taken over.
      this.have = new IntervalSet();
      this.notify();
    }
    return n;
  }

  want(pos: number): void {
    if (this.local) this.local.want(pos);
    else this.source.want(pos);
  }

  changed(): Promise<void> {
    if (this.local) return this.local.changed();
    return new Promise((r) => this.waiters.push(r));
  }

  acquire(): void {
    if (this.local) this.local.acquire();
    else this.readers++;
  }

  release(): void {
    if (this.local) return this.local.release();
    this.readers--;
    this.maybeCloseFile();
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  private async poll(): Promise<void> {
    if (this.polling || this.err || this.published || this.local) return;
    this.polling = true;
    try {
      if ((await this.deps.blobs.size(this.digest)) !== null) return this.finish();
      const st = await this.source.state();
      if (st && st.size === this.size) {
        const next = new IntervalSet(st.have);
        if (this.source.local && !covers(next, this.have)) {
          throw new RegistryError('UNAVAILABLE', `the other ollama-registry process filling blob ${this.digest} started it over; pull again`);
        }
        if (next.total() !== this.have.total() || !covers(next, this.have)) {
          this.have = next;
          this.notify();
        }
      } else if (!st && !this.source.local && this.have.total() > 0) {
        this.have = new IntervalSet(); // the owner does not answer: nothing is readable from it now
        this.notify();
      }
      if (Date.now() - this.leaseCheckedAt < LEASE_CHECK_MS) return;
      this.leaseCheckedAt = Date.now();
      const holder = await leaseHolder(this.deps.driver, fillLeaseKey(this.digest));
      if (holder?.owner === this.owner.owner) return;
      // The owner is gone without publishing (crashed, failed, or discarded bad bytes): the
      // blob may have landed just before its lease went; else this process carries on.
      if ((await this.deps.blobs.size(this.digest)) !== null) return this.finish();
      await this.takeOverNow();
    } catch (e) {
      this.fail(e as Error);
    } finally {
      this.polling = false;
    }
  }

  private async takeOverNow(): Promise<void> {
    clearInterval(this.timer);
    const f = await this.takeOver();
    if (f === null) return this.finish();
    if (this.source.local && (!(f instanceof Fill) || !covers(f.have, this.have))) {
      // Our readers got bytes from staging files that the new fill does not vouch for. (Bytes
      // read from a peer came from its own copy: the new fill brings them again, and a reader
      // gets the blob's last byte only once the new fill has checked the digest.)
      throw new RegistryError('UNAVAILABLE', `the other ollama-registry process filling blob ${this.digest} stopped and its partial data could not be reused; pull again`);
    }
    // Another follower may have taken it over first: this process then follows that one (fills.ts logs it).
    if (f instanceof Fill) this.deps.log.info({ digest: this.digest, owner: this.owner.owner, filled: f.filled() }, 'took over a fill that another process left');
    this.local = f;
    for (let i = 0; i < this.readers; i++) f.acquire();
    this.readers = 0;
    if (this.lanes) f.parallel(this.lanes);
    this.maybeCloseFile();
    void f.settled.then(() => this.settle());
    void f.closed.then(() => this.close());
    this.notify();
  }

  private finish(): void {
    this.published = true;
    clearInterval(this.timer);
    this.settle();
    this.close();
    this.notify();
    this.maybeCloseFile();
  }

  /** Stop following with an error (shutdown, or the other process's data became unusable). */
  fail(err: Error): void {
    if (this.local) return this.local.fail(err);
    if (this.err || this.published) return;
    this.err = err;
    clearInterval(this.timer);
    this.settle();
    this.close();
    this.notify();
    this.maybeCloseFile();
  }

  private maybeCloseFile(): void {
    if (this.readers > 0 || !(this.err || this.published || this.local)) return;
    this.source.close();
  }
}
