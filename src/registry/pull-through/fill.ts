// Pull-through fills: the one place a missing blob comes in from an upstream.
//
// One Fill per digest, shared by every client and range request, detached from whoever started
// it, run under the fill's lease (fills.ts). Bytes land in a sparse staging file in the scratch
// folder (fill-scratch.ts) at their offsets; `have` records which intervals are on disk and is
// persisted to state.json (after a datasync) so a restart or a take-over resumes without
// fetching them again. Upstream traffic is organised in
// lanes: a lane owns [next, end) and fetches it with bounded, growing ranged requests, so that
// a reader whose bytes are far ahead of a lane can split it and get its own lane at once (all of
// ollama's 16 parts progress in parallel) while no byte is ever requested twice. The contiguous
// prefix is hashed as it grows (fill-hash.ts); when every byte is in, the digest is checked and
// the file is published into the store (or discarded, loudly). Clients are served by fill-reader.ts.
import { setMaxListeners } from 'node:events';
import { stat, type FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { fromFsError, RegistryError, isRegistryError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Driver } from '../../storage/driver.js';
import type { KeptLease } from '../../storage/lease.js';
import { UpstreamError, type Upstream } from '../../upstream/client.js';
import type { BlobStore } from '../blobs/blobs.js';
import type { DiskSpace } from '../housekeeping/disk-space.js';
import { PrefixHash } from './fill-hash.js';
import { copyFill, RecentBytes, type ReadableFill, type Slices } from './fill-reader.js';
import { fillScratchFile, publishBlob, removeFillScratch, writeFillState, type FillState } from './fill-scratch.js';
import { receive, type Fetch } from './fill-receive.js';
import type { Batch } from './batches.js';
import { IntervalSet } from './intervals.js';
import { MiB } from '../../units.js';

/** A lane's first request size, doubled per request up to maxChunk. Tests shrink these. */
export const FILL_TUNING = { firstChunk: 8 * MiB, maxChunk: 64 * MiB, minSplit: 2 * MiB };
const MAX_LANES = 32; // upstream connections per fill at most
const BACKGROUND_LANES = 16;
const RECENT_BYTES = 32 * MiB; // the last batches written, kept for readers near the frontier
const MAX_ATTEMPTS = 4; // per upstream, without progress, before the fill fails
const PERSIST_MS = 1000;

export interface FillDeps { driver: Driver; blobs: BlobStore; log: Logger; metrics?: Metrics; space?: DiskSpace; scratch: string }

export interface FillSource {
  /** Upstreams to fetch from, in order (later ones are fallbacks). */
  upstreams: Upstream[];
  namespace: string;
  model: string;
}

interface Lane { next: number; end: number; chunk: number }

export type { FillState } from './fill-scratch.js';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Turn an upstream failure into the registry error a client sees. */
export function upstreamToRegistryError(e: unknown, what: 'blob' | 'manifest'): unknown {
  if (!(e instanceof UpstreamError)) return e;
  if (e.kind === 'not-found') return new RegistryError(what === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', e.message, { cause: e });
  if (e.kind === 'unreachable' || e.kind === 'cut-off') return new RegistryError('UNAVAILABLE', e.message, { cause: e });
  return new RegistryError('UPSTREAM_FAILED', e.message, { cause: e });
}

export class Fill implements ReadableFill {
  readonly have: IntervalSet;
  error?: Error;
  verified = false;
  /** Body bytes received from upstreams by this fill (this process). */
  received = 0;
  readonly settled: Promise<void>;
  readonly closed: Promise<void>;
  private settle!: () => void;
  private close!: () => void;
  private lanes = new Set<Lane>();
  private fetches = new Set<Fetch>();
  private waiters: Array<() => void> = [];
  private hash: PrefixHash;
  private recent = new RecentBytes(RECENT_BYTES);
  private finishing = false;
  private dirty = false;
  private persistChain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout;
  private readers = 0;
  private fhClosed = false;
  private upIdx: number;
  private direct: { url?: string } = {};

  constructor(readonly digest: string, readonly size: number, private readonly fh: FileHandle, have: Array<[number, number]>,
    readonly src: FillSource, upIdx: number, private readonly deps: FillDeps, private readonly lease: KeptLease) {
    this.have = new IntervalSet(have);
    this.hash = new PrefixHash(fh, digest);
    this.upIdx = upIdx;
    this.settled = new Promise((r) => (this.settle = r));
    this.closed = new Promise((r) => (this.close = r));
    this.timer = setInterval(() => void this.persist(), PERSIST_MS);
    this.timer.unref();
  }

  get upstream(): Upstream | undefined {
    return this.src.upstreams[this.upIdx];
  }

  /** Bytes on disk so far. */
  filled(): number {
    return this.have.total();
  }

  start(): void {
    this.schedule();
    this.hashMore();
  }

  /** Fetch the rest in up to `n` parallel lanes (prefetch without a client asking for ranges). */
  parallel(n: number): void {
    for (let k = 1; k < n; k++) this.demand(Math.floor((this.size * k) / n));
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  changed(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  private async until(pred: () => boolean): Promise<void> {
    while (!pred()) await this.changed();
  }

  /** Write bytes [start, end] (inclusive) into `out` as they arrive (see fill-reader.ts). */
  copyTo(out: Writable, start: number, end: number): Promise<void> {
    return copyFill(this, this.deps.blobs, out, start, end);
  }

  readableEnd(pos: number): number {
    for (;;) {
      const next = Math.max(this.have.runEnd(pos), this.recent.runEnd(pos));
      if (next === pos) return pos;
      pos = next;
    }
  }

  memory(pos: number, end: number, max: number): Slices {
    return this.recent.slices(pos, end, max);
  }

  async readAt(buf: Buffer, len: number, pos: number): Promise<number> {
    return (await this.fh.read(buf, 0, len, pos)).bytesRead;
  }

  want(pos: number): void {
    this.demand(pos);
  }

  acquire(): void {
    this.readers++;
  }

  release(): void {
    this.readers--;
    this.maybeCloseFile();
  }

  private claims(): Array<[number, number]> {
    const c: Array<[number, number]> = [];
    for (const f of this.fetches) if (f.pos < f.end) c.push([f.pos, f.end]);
    for (const l of this.lanes) if (l.next < l.end) c.push([l.next, l.end]);
    return c.sort((a, b) => a[0] - b[0]);
  }

  /** Make sure some lane will bring byte p soon. */
  private demand(p: number): void {
    if (this.error || this.verified || p >= this.size) return;
    for (const f of this.fetches) if (f.pos <= p && p < f.end) return;
    for (const l of this.lanes) {
      if (l.next <= p && p < l.end) {
        // The lane's next request starts close enough, or we are at the connection limit: wait for it.
        if (p < l.next + FILL_TUNING.minSplit || this.lanes.size >= MAX_LANES) return;
        const nl: Lane = { next: p, end: l.end, chunk: FILL_TUNING.firstChunk };
        l.end = p;
        void this.runLane(nl);
        return;
      }
    }
    let end = Math.min(this.size, this.have.nextStart(p));
    for (const [a] of this.claims()) if (a > p) end = Math.min(end, a);
    void this.runLane({ next: p, end, chunk: FILL_TUNING.firstChunk });
  }

  /** Start lanes for bytes nobody is bringing, so the fill completes with no reader left. */
  private schedule(): void {
    if (this.error || this.verified) return;
    const claims = this.claims();
    for (const [gs, ge] of this.have.gaps(this.size)) {
      let p = gs;
      for (const [a, b] of claims) {
        if (b <= p || a >= ge) continue;
        if (a > p && this.lanes.size < BACKGROUND_LANES) void this.runLane({ next: p, end: a, chunk: FILL_TUNING.firstChunk });
        p = Math.max(p, b);
      }
      if (p < ge && this.lanes.size < BACKGROUND_LANES) void this.runLane({ next: p, end: ge, chunk: FILL_TUNING.firstChunk });
    }
  }

  private async runLane(lane: Lane): Promise<void> {
    this.lanes.add(lane);
    const inflight = new Set<Promise<void>>();
    try {
      while (!this.error) {
        const filledEnd = this.have.runEnd(lane.next);
        if (filledEnd > lane.next) lane.next = Math.min(filledEnd, lane.end);
        if (lane.next >= lane.end) break;
        const stop = Math.min(lane.end, this.have.nextStart(lane.next), lane.next + lane.chunk);
        const f: Fetch = { start: lane.next, pos: lane.next, end: stop, abort: new AbortController() };
        setMaxListeners(64, f.abort.signal); // one signal serves the retries of this range
        lane.next = stop;
        lane.chunk = Math.min(lane.chunk * 2, FILL_TUNING.maxChunk);
        this.fetches.add(f);
        const run: Promise<void> = this.runFetch(f).finally(() => inflight.delete(run));
        inflight.add(run);
        // Ask for the next range when this one is half in, so no round trip leaves the link idle.
        await this.until(() => f.pos - f.start >= (f.end - f.start) / 2 || f.pos >= f.end || !!this.error);
        while (inflight.size >= 2) await Promise.race(inflight);
      }
      await Promise.all(inflight);
    } finally {
      this.lanes.delete(lane);
      this.schedule();
    }
  }

  private async runFetch(f: Fetch): Promise<void> {
    let attempts = 0;
    try {
      while (f.pos < f.end && !this.error) {
        const up = this.src.upstreams[this.upIdx];
        if (!up) return this.fail(new RegistryError('BLOB_UNKNOWN', `no upstream has blob ${this.digest}`));
        const before = f.pos;
        try {
          const res = await up.blobRange(this.src.namespace, this.src.model, this.digest, f.pos, f.end, this.direct, this.size, f.abort.signal);
          await receive(f, res.body as unknown as Readable, {
            write: (buf, at) => this.writeAt(buf, at),
            landed: (at, batch) => {
              up.bytesIn += batch.len;
              this.landed(at, batch);
            },
            stopped: () => !!this.error,
          });
          if (f.pos < f.end && !this.error) throw new UpstreamError(up.name, 'unreachable', `${up.describe()} broke off the blob ${this.digest} at byte ${f.pos}, before ${f.end}`);
        } catch (caught) {
          if (this.error) return;
          // A full disk (or the free-space floor): retrying cannot help, and the bytes must go now.
          const disk = fromFsError(caught, `blob ${this.digest}`);
          if (isRegistryError(disk) && disk.code === 'INSUFFICIENT_STORAGE') return this.fail(disk, true);
          const e = up.brokeOff(caught, `blob ${this.digest} at byte ${f.pos}`);
          if (f.pos > before) attempts = 0;
          attempts++;
          // Not there, refused credentials, cut off, or sent where we do not go: retrying the same upstream cannot help.
          const final = e instanceof UpstreamError && (e.kind === 'not-found' || e.kind === 'auth' || e.kind === 'cut-off' || e.kind === 'refused');
          if (final || attempts >= MAX_ATTEMPTS) {
            if (this.src.upstreams[this.upIdx] === up && this.upIdx + 1 < this.src.upstreams.length) {
              this.deps.log.warn({ digest: this.digest, upstream: up.name, err: (e as Error).message }, 'blob transfer failed; trying the next upstream');
              this.upIdx++;
              this.direct = {};
              attempts = 0;
              continue;
            }
            if (this.src.upstreams[this.upIdx] !== up) continue;
            return this.fail(upstreamToRegistryError(e, 'blob') as Error);
          }
          this.deps.log.warn({ digest: this.digest, upstream: up.name, at: f.pos, attempt: attempts, err: (e as Error).message }, 'blob transfer from upstream failed; retrying');
          await sleep(Math.min(500 * 2 ** (attempts - 1), 8000) * (0.5 + Math.random()));
        }
      }
    } finally {
      this.fetches.delete(f);
      this.notify();
    }
  }

  /** Put a batch's bytes at `at` in the staging file (a short write is finished by hand). */
  private async writeAt(buf: Buffer, at: number): Promise<void> {
    await this.deps.space?.take(`blob ${this.digest}`, buf.length);
    for (let off = 0; off < buf.length;) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, at + off);
      if (bytesWritten <= 0) throw new Error(`the staging file of ${this.digest} took no bytes at ${at + off}`);
      off += bytesWritten;
    }
  }

  /** A batch is on disk: record it, hash it if it continues the prefix, keep it for readers. */
  private landed(at: number, batch: Batch): void {
    const len = batch.len;
    if (!this.finishing) this.hash.written(at, batch.bytes());
    if (!this.error) this.recent.add(at, batch);
    this.have.add(at, at + len);
    this.received += len;
    this.dirty = true;
    this.notify();
    this.hashMore();
  }

  private hashMore(): void {
    if (this.hash.busy || this.error || this.finishing) return;
    if (this.hash.hashed === this.size) {
      void this.finish();
      return;
    }
    if (this.have.runEnd(this.hash.hashed) <= this.hash.hashed) return;
    void this.hash.catchUp(() => this.have.runEnd(this.hash.hashed), () => !!this.error, (pos, end, max) => this.recent.slices(pos, end, max))
      .then(() => this.hashMore(), (e) => this.fail(e as Error));
  }

  private async finish(): Promise<void> {
    if (this.finishing || this.error) return;
    this.finishing = true;
    const got = this.hash.digest();
    const up = this.upstream;
    if (got !== this.digest) {
      this.deps.log.error({ digest: this.digest, got, upstream: up?.name, size: this.size },
        'DIGEST MISMATCH: an upstream sent bytes that do not match the blob digest; the fill was discarded and nothing was published');
      this.fail(new RegistryError('UPSTREAM_FAILED', `${up?.describe() ?? 'the upstream'} sent bytes whose sha256 is ${got}, not ${this.digest}; they were discarded, pull again`), true);
      return;
    }
    try {
      clearInterval(this.timer);
      await this.persistChain;
      await this.fh.datasync();
      if (this.lease.lost) throw new RegistryError('UNAVAILABLE', `another process took over the fill of blob ${this.digest}; pull again`);
      const how = (await this.deps.blobs.size(this.digest)) === null ? await publishBlob(this.deps.driver, this.deps.scratch, this.digest) : 'present';
      this.verified = true;
      this.recent.clear();
      this.deps.log.info({ digest: this.digest, size: this.size, upstream: up?.name, upstreamBytes: this.received, published: how }, 'blob filled from upstream and verified');
      await this.persistChain.then(() => removeFillScratch(this.deps.scratch, this.digest)).catch(() => {});
      await this.lease.release(true);
    } catch (e) {
      this.finishing = false;
      this.fail(e as Error);
      return;
    }
    this.settle();
    this.close();
    this.notify();
    this.maybeCloseFile();
  }

  /**
   * Stop with an error: readers get it. What was filled is kept for a resume (the state records
   * it), unless `discard`, or unless no state could be recorded: bytes nobody can resume are freed at once.
   */
  fail(err: Error, discard = false): void {
    if (this.error || this.verified) return;
    this.error = isRegistryError(err) ? err : (upstreamToRegistryError(err, 'blob') as Error);
    if (!isRegistryError(this.error)) this.deps.log.error({ err, digest: this.digest }, 'blob fill failed');
    for (const f of this.fetches) f.abort.abort();
    this.recent.clear();
    this.settle();
    this.notify();
    void (async () => {
      await this.until(() => this.fetches.size === 0);
      clearInterval(this.timer);
      // A lost lease: the files are the new owner's now, untouched.
      if (!discard && !this.lease.lost) {
        await this.persist();
        await this.persistChain;
        discard = (await stat(fillScratchFile(this.deps.scratch, this.digest, 'state.json')).catch(() => null)) === null;
      }
      // The lease goes last, so no other process takes over a folder being emptied.
      if (discard && !this.lease.lost) await this.persistChain.then(() => removeFillScratch(this.deps.scratch, this.digest)).catch(() => {});
      await this.lease.release(discard);
      this.close();
      this.maybeCloseFile();
    })();
  }

  private maybeCloseFile(): void {
    if (this.readers > 0 || this.fhClosed || !(this.verified || this.error) || this.hash.busy) return;
    this.fhClosed = true;
    void this.closed.then(() => this.fh.close()).catch(() => {});
  }

  /** What is on disk now, as state.json and the internal endpoint (fill-peer.ts) tell it. */
  state(): FillState {
    return { version: 1, digest: this.digest, size: this.size, namespace: this.src.namespace, model: this.src.model, upstream: this.upstream?.name ?? '', have: this.have.toJSON() };
  }

  /** Record the filled intervals; the data is synced first so the record never claims more than the disk has. */
  persist(): Promise<void> {
    this.persistChain = this.persistChain.then(async () => {
      if (!this.dirty || this.verified || this.finishing || this.lease.lost) return;
      this.dirty = false;
      const state = this.state();
      await this.fh.datasync();
      await writeFillState(this.deps.scratch, state);
    }).catch((e) => this.deps.log.warn({ err: (e as Error).message, digest: this.digest }, 'could not record fill progress'));
    return this.persistChain;
  }
}

