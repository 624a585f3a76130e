// One upstream response of a fill (fill.ts) into the staging file: the body's chunks are
// gathered into batches, written at their offsets with up to two writes in flight (a slow disk
// round trip does not stall the socket), and reported once on disk.
import type { Readable } from 'node:stream';
import { MiB } from '../../units.js';

const FLUSH_BYTES = 1 * MiB; // write (and wake readers) at least every MiB…
const FLUSH_MS = 50; // …or every 50 ms

/** One ranged request: it owns [start, end) and has brought [start, pos). */
export interface Fetch { start: number; pos: number; end: number; abort: AbortController }

export interface ReceiveTarget {
  /** Put a batch at `at` in the staging file. */
  write(bufs: Buffer[], len: number, at: number): Promise<void>;
  /** A batch is on disk (f.pos already moved past it). */
  landed(at: number, bufs: Buffer[], len: number): void;
  /** The fill stopped: drop the rest. */
  stopped(): boolean;
}

/**
 * Copy a response body into the staging file at f.pos; keeps what arrived on errors.
 * 'data' events rather than async iteration: no concatenation copy of every chunk.
 */
export function receive(f: Fetch, body: Readable, target: ReceiveTarget): Promise<void> {
  let batch: Buffer[] = [];
  let n = 0;
  let t0 = 0;
  let queued = 0; // handed to a write, not yet on disk
  let failed: unknown;
  let chain: Promise<void> = Promise.resolve();
  let inFlight = 0;
  const write = async (bufs: Buffer[], len: number, at: number) => {
    if (failed !== undefined || target.stopped()) return;
    try {
      await target.write(bufs, len, at);
    } catch (e) {
      failed = e;
      return;
    }
    queued -= len;
    f.pos = at + len;
    target.landed(at, bufs, len);
  };
  const flush = () => {
    if (n === 0) return;
    const bufs = batch;
    const len = n;
    const at = f.pos + queued;
    batch = [];
    n = 0;
    queued += len;
    inFlight++;
    chain = chain.then(() => write(bufs, len, at)).finally(() => {
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
      let chunk = c;
      const room = f.end - (f.pos + queued + n);
      if (chunk.length > room) chunk = chunk.subarray(0, room); // never past the range we own
      if (n === 0) t0 = Date.now();
      batch.push(chunk);
      n += chunk.length;
      // The first bytes of a range go out at once (time to first byte), then in batches.
      if (n >= FLUSH_BYTES || Date.now() - t0 >= FLUSH_MS || f.pos + queued === f.start) {
        flush();
        if (inFlight >= 2) body.pause();
      }
      if (f.pos + queued + n >= f.end) {
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
