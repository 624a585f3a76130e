// The sha256 of a blob being filled, computed over its contiguous prefix as it grows: bytes that
// continue the prefix are hashed from memory as they are written; bytes that landed ahead of it
// (other lanes) are read back from the staging file when the prefix reaches them.
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

const READ_BACK = 4 << 20;

export class PrefixHash {
  /** Bytes hashed so far: [0, hashed). */
  hashed = 0;
  /** Reading back from disk (memory bytes wait for it). */
  busy = false;
  private hasher = createHash('sha256');
  private buf?: Buffer;

  constructor(private readonly fh: FileHandle, private readonly what: string) {}

  /** Bytes just written at `at`; hashed now when they continue the prefix. */
  written(at: number, bufs: Buffer[], len: number): void {
    if (at !== this.hashed || this.busy) return;
    for (const b of bufs) this.hasher.update(b);
    this.hashed += len;
  }

  /** Hash what is on disk from the prefix's end up to `prefixEnd()` (re-asked after each read). */
  async catchUp(prefixEnd: () => number, stop: () => boolean): Promise<void> {
    this.busy = true;
    try {
      const buf = (this.buf ??= Buffer.allocUnsafeSlow(READ_BACK));
      for (;;) {
        const end = prefixEnd();
        if (end <= this.hashed || stop()) break;
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
