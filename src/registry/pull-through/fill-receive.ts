// One upstream response of a fill (fill.ts) into the staging file: the body's chunks are copied
// into 1 MiB batches (batches.ts), written at their offsets with up to two writes in flight (a
// slow disk round trip does not stall the socket), and reported once on disk.
import type { Readable } from 'node:stream';
import { BATCH_BYTES, takeBatch, type Batch } from './batches.js';

const FLUSH_MS = 50; // a batch is written when full, or 50 ms after its first byte

/** One ranged request: it owns [start, end) and has brought [start, pos). */
export interface Fetch { start: number; pos: number; end: number; abort: AbortController }

export interface ReceiveTarget {
  /** Put a batch's bytes at `at` in the staging file. */
  write(buf: Buffer, at: number): Promise<void>;
  /** A batch is on disk (f.pos already moved past it); hold it to keep it past this call. */
  landed(at: number, batch: Batch): void;
  /** The fill stopped: drop the rest. */
  stopped(): boolean;
}

/**
 * Copy a response body into the staging file at f.pos; keeps what arrived on errors.
 * 'data' events rather than async iteration: no concatenation copy of every chunk.
 */
export function receive(f: Fetch, body: Readable, target: ReceiveTarget): Promise<void> {
  let cur: Batch | undefined;
  let t0 = 0;
  let queued = 0; // handed to a write, not yet on disk
  let failed: unknown;
  let chain: Promise<void> = Promise.resolve();
  let inFlight = 0;
  const write = async (batch: Batch, at: number) => {
    try {
      if (failed !== undefined || target.stopped()) return;
      try {
        await target.write(batch.bytes(), at);
      } catch (e) {
        failed = e;
        return;
      }
      queued -= batch.len;
      f.pos = at + batch.len;
      target.landed(at, batch);
    } finally {
      batch.release();
    }
  };
  const flush = () => {
    const batch = cur;
    if (!batch || batch.len === 0) return;
    cur = undefined;
    const at = f.pos + queued;
    queued += batch.len;
    inFlight++;
    chain = chain.then(() => write(batch, at)).finally(() => {
      inFlight--;
      if (inFlight < 2 && body.isPaused()) body.resume();
    });
  };
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      body.off('data', onData);
      flush();
      void chain.then(() => {
        if (failed !== undefined) reject(failed);
        else if (err !== undefined) reject(err);
        else resolve();
      });
    };
    const onData = (c: Buffer) => {
      if (target.stopped() || failed !== undefined) {
        body.destroy();
        return finish();
      }
      const room = f.end - (f.pos + queued + (cur?.len ?? 0));
      const len = Math.min(c.length, room); // never past the range we own
      for (let off = 0; off < len;) {
        if (!cur) {
          cur = takeBatch();
          t0 = Date.now();
        }
        const n = c.copy(cur.buf, cur.len, off, len);
        cur.len += n;
        off += n;
        // The first bytes of a range go out at once (time to first byte), then in whole batches.
        if (cur.len === BATCH_BYTES || f.pos + queued === f.start) flush();
      }
      if (cur && Date.now() - t0 >= FLUSH_MS) flush();
      if (inFlight >= 2) body.pause();
      if (f.pos + queued + (cur?.len ?? 0) >= f.end) {
        body.destroy();
        finish();
      }
    };
    body.on('data', onData);
    body.once('end', () => finish());
    body.once('error', (e) => finish(e));
    body.once('close', () => finish());
  });
}
