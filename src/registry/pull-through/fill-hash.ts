// The sha256 of a blob being filled, computed over its contiguous prefix as it grows: bytes that
// continue the prefix are hashed from memory as they are written; bytes that landed ahead of it
// (other lanes, a lane's next range) are hashed when the prefix reaches them, from the recent
// batches still in memory when they are there, else read back from the staging file.
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Slices } from './fill-reader.js';

const READ_BACK = 4 << 20;

export class PrefixHash {
  /** Bytes hashed so far: [0, hashed). */
  hashed = 0;
  /** Catching up (memory bytes wait for it). */
  busy = false;
  private hasher = createHash('sha256');
  private buf?: Buffer;

  constructor(private readonly fh: FileHandle, private readonly what: string) {}

  /** Bytes just written at `at`; hashed now when they continue the prefix. */
  written(at: number, bytes: Buffer): void {
    if (at !== this.hashed || this.busy) return;
    this.hasher.update(bytes);
    this.hashed += bytes.length;
  }

  /** Hash what is in memory or on disk from the prefix's end up to `prefixEnd()` (re-asked after each step). */
  async catchUp(prefixEnd: () => number, stop: () => boolean, memory: (pos: number, end: number, max: number) => Slices): Promise<void> {
    this.busy = true;
    try {
      for (;;) {
        const end = prefixEnd();
        if (end <= this.hashed || stop()) break;
        const mem = memory(this.hashed, end, READ_BACK);
        if (mem.bufs.length) {
          for (const b of mem.bufs) {
            this.hasher.update(b);
            this.hashed += b.length;
          }
          mem.release();
          continue;
        }
        const buf = (this.buf ??= Buffer.allocUnsafeSlow(READ_BACK));
        const len = Math.min(buf.length, end - this.hashed);
        const { bytesRead } = await this.fh.read(buf, 0, len, this.hashed);
        if (bytesRead <= 0) throw new Error(`short read at ${this.hashed} while hashing ${this.what}`);
        this.hasher.update(buf.subarray(0, bytesRead));
        this.hashed += bytesRead;
      }
    } finally {
      this.busy = false;
    }
  }

  digest(): string {
    return `sha256:${this.hasher.digest('hex')}`;
  }
}
