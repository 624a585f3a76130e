// Reusable 1 MiB buffers for the bytes of fills. Each socket chunk from an upstream is copied into
// one at once, so no chunk outlives its 'data' event. Chunks kept until their file write finished
// (and then in the recent-bytes window) were promoted by the GC, and their 64 KiB backing stores
// then cost a full collection every ~20 MiB: about 50 per GiB filled, 1.2-1.5 s of GC threads
// per GiB (issue 18's profile). A batch goes back to the pool when its last holder lets go: the
// staging-file write, the recent-bytes window, each socket write of it. A holder that never lets go
// (a socket destroyed before its write callback) only leaves the buffer to the GC: a buffer is
// reused only when nothing holds it.
import { MiB } from '../../units.js';

export const BATCH_BYTES = 1 * MiB;
const POOL_MAX = 48; // idle buffers kept for the next batches (the recent window is 32 MiB)
const IDLE_MS = 30_000; // an unused pool is dropped after this

const pool: Buffer[] = [];
let lastTake = 0;
let trimmer: NodeJS.Timeout | undefined;

export class Batch {
  /** Bytes filled so far, from buf[0]. */
  len = 0;
  private refs = 1; // the receiver's, until its write is done

  constructor(readonly buf: Buffer) {}

  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  hold(): void {
    this.refs++;
  }

  release(): void {
    if (this.refs <= 0) return; // a second release must never hand the buffer out twice
    if (--this.refs === 0) give(this.buf);
  }
}

/** A new empty batch (held once: release it when its write is done or dropped). */
export function takeBatch(): Batch {
  lastTake = Date.now();
  return new Batch(pool.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES));
}

function give(buf: Buffer): void {
  if (pool.length >= POOL_MAX) return;
  pool.push(buf);
  trimmer ??= setInterval(() => {
    if (Date.now() - lastTake < IDLE_MS) return;
    pool.length = 0;
    clearInterval(trimmer);
    trimmer = undefined;
  }, IDLE_MS).unref();
}

/** Idle buffers in the pool (tests). */
export function pooledBatches(): number {
  return pool.length;
}
