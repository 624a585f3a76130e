// Serving clients from a blob that is still being filled (fill.ts) or that another process is
// filling (fill-follow.ts). Bytes come from the recently received batches still in memory when
// they are there (no disk read, no copy: every reader near the frontier writes the same buffers
// to its socket, holding each batch until the socket took it), else from the staging file into
// two buffers per reader that are reused once the socket took them (no garbage per read). A reader
// that ends at the blob's last byte gets it only after the digest matched; then the rest comes
// from the published blob.
import type { Writable } from 'node:stream';
import type { BlobStore } from '../blobs/blobs.js';
import { MiB, IO_CHUNK } from '../../units.js';
import type { Batch } from './batches.js';

const MAX_CORKED = 8 * MiB; // memory bytes handed to one socket write at most

/** What a reader needs from a fill. */
export interface ReadableFill {
  readonly digest: string;
  readonly size: number;
  readonly error?: Error;
  /** The blob is published in blobs/: read it there. */
  readonly verified: boolean;
  /** End (exclusive) of the bytes readable from `pos` on, in memory or on disk (`pos` when none). */
  readableEnd(pos: number): number;
  /** Buffers holding [pos, …) from memory, at most up to `end` and `max` bytes; empty when not in memory. Release them when done. */
  memory(pos: number, end: number, max: number): Slices;
  readAt(buf: Buffer, len: number, pos: number): Promise<number>;
  /** A reader waits for byte `pos`: make sure it is coming. */
  want(pos: number): void;
  /** Resolves at the next change of any of the above. */
  changed(): Promise<void>;
  /** Readers keep the staging file open. */
  acquire(): void;
  release(): void;
}

/** Slices of held batches: call release() once they are no longer used. */
export interface Slices { bufs: Buffer[]; release(): void }

export const NO_SLICES: Slices = { bufs: [], release: () => {} };

interface Recent { at: number; end: number; batch: Batch }

/**
 * Batches recently written to the staging file, kept in memory for readers: up to `cap` bytes of
 * buffers, counted whole (on a slow link a batch is written 50 ms after its first byte, mostly empty).
 */
export class RecentBytes {
  private batches: Recent[] = [];
  private bytes = 0;

  constructor(private readonly cap: number) {}

  add(at: number, batch: Batch): void {
    if (this.cap <= 0) return;
    batch.hold();
    this.batches.push({ at, end: at + batch.len, batch });
    this.bytes += batch.buf.length;
    while (this.bytes > this.cap && this.batches.length > 1) {
      const b = this.batches.shift()!;
      this.bytes -= b.batch.buf.length;
      b.batch.release();
    }
  }

  private find(p: number): Recent | undefined {
    // Newest first: readers are mostly at the frontier.
    for (let i = this.batches.length - 1; i >= 0; i--) {
      const b = this.batches[i]!;
      if (b.at <= p && p < b.end) return b;
    }
    return undefined;
  }

  /** End of the in-memory run that contains `p`, or `p`. */
  runEnd(p: number): number {
    for (let b = this.find(p); b; b = this.find(p)) p = b.end;
    return p;
  }

  /** [pos, …) up to `end` and `max` bytes, each batch held until release(). */
  slices(pos: number, end: number, max: number): Slices {
    const bufs: Buffer[] = [];
    const held: Batch[] = [];
    let n = 0;
    for (let b = this.find(pos); b && pos < end && n < max; b = this.find(pos)) {
      const s = b.batch.buf.subarray(pos - b.at, Math.min(b.end, end, pos + max - n) - b.at);
      b.batch.hold();
      held.push(b.batch);
      bufs.push(s);
      n += s.length;
      pos += s.length;
    }
    if (!held.length) return NO_SLICES;
    let released = false;
    return {
      bufs,
      release: () => {
        if (released) return;
        released = true;
        for (const b of held) b.release();
      },
    };
  }

  clear(): void {
    for (const b of this.batches) b.batch.release();
    this.batches = [];
    this.bytes = 0;
  }
}

const goneError = () => Object.assign(new Error('client went away'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });

/**
 * Write bytes [start, end] (inclusive) of a fill into `out` as they arrive, then end it.
 * Rejects with the fill's error, or with ERR_STREAM_PREMATURE_CLOSE when the client left.
 */
export async function copyFill(fill: ReadableFill, blobs: BlobStore, out: Writable, start: number, end: number): Promise<void> {
  // One listener for the whole copy (a race per wait would pile reactions on a promise that
  // never settles); a wait ends early when the client goes.
  let closed = out.destroyed;
  let wake: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    wake?.();
  };
  out.once('close', onClose);
  const wait = async (p: Promise<unknown>) => {
    if (closed) throw goneError();
    await new Promise<void>((resolve, reject) => {
      wake = resolve;
      p.then(() => resolve(), reject);
    });
    wake = undefined;
    if (closed) throw goneError();
  };
  const written = (buf: Buffer) => new Promise<void>((resolve, reject) => out.write(buf, (e) => (e ? reject(e) : resolve())));
  fill.acquire();
  try {
    let pos = start;
    const holdLast = end === fill.size - 1;
    const bufs: Array<Buffer | undefined> = [];
    const flushed: Array<Promise<void> | undefined> = [];
    let i = 0;
    while (pos <= end) {
      if (closed) throw goneError();
      if (fill.error) throw fill.error;
      if (fill.verified) {
        await blobs.copyTo(fill.digest, out, { start: pos, end });
        return;
      }
      let avail = Math.min(fill.readableEnd(pos), end + 1);
      if (holdLast && avail === fill.size) avail--;
      if (avail > pos) {
        const mem = fill.memory(pos, avail, MAX_CORKED);
        if (mem.bufs.length) {
          let ok = true;
          out.cork();
          // Writes complete in order: the last one's callback frees every batch. A socket destroyed first
          // may never call it; the batches then go to the GC instead of back to the pool, never reused early.
          mem.bufs.forEach((b, k) => {
            ok = k === mem.bufs.length - 1 ? out.write(b, () => mem.release()) : out.write(b);
            pos += b.length;
          });
          out.uncork();
          if (!ok) await wait(new Promise((r) => out.once('drain', r)));
          continue;
        }
        const f = flushed[i];
        if (f) await wait(f); // this buffer is free again once the socket took its last bytes
        const buf = (bufs[i] ??= Buffer.allocUnsafeSlow(IO_CHUNK));
        const n = await fill.readAt(buf, Math.min(IO_CHUNK, avail - pos), pos);
        if (n <= 0) {
          if (fill.readableEnd(pos) > pos) throw new Error(`short read at ${pos} from the staging file of ${fill.digest}`);
          continue; // the bytes are no longer readable (a followed owner stopped answering): wait for them again
        }
        const w = written(buf.subarray(0, n));
        w.catch(() => {}); // awaited before reuse; the close check reports a lost client
        flushed[i] = w;
        pos += n;
        i ^= 1;
        continue;
      }
      if (fill.readableEnd(pos) === pos) fill.want(pos);
      await wait(fill.changed());
    }
    out.end();
  } finally {
    out.off('close', onClose);
    fill.release();
  }
}
