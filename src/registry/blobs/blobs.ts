// Blobs by sha256 digest. A blob becomes visible only after its bytes were hashed and matched.
import { unlink } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Readable, type Writable } from 'node:stream';
import { fromFsError, isRegistryError, RegistryError } from '../../errors.js';
import { digestFromBlobFileName, digestHex } from '../../names.js';
import type { ByteRange, Driver } from '../../storage/driver.js';
import { BLOBS, blobKey } from '../../storage/layout.js';
import type { DiskSpace } from '../housekeeping/disk-space.js';
import { HashingStream } from './hashing.js';

export class BlobStore {
  /** `space`: writes are refused below the free-space floor (storage.minFree). */
  constructor(readonly driver: Driver, private readonly space?: DiskSpace) {}

  /** Size of a stored blob, or null. Throws DIGEST_INVALID for a malformed digest. */
  async size(digest: string): Promise<number | null> {
    const st = await this.driver.stat(blobKey(digest));
    return st ? st.size : null;
  }

  /** Write a blob (or a range) into `out` and end it. */
  async copyTo(digest: string, out: Writable, range?: ByteRange): Promise<void> {
    const key = blobKey(digest);
    if (this.driver.copyTo) return this.driver.copyTo(key, out, range);
    await pipeline(await this.driver.read(key, range), out);
  }

  async open(digest: string, range?: ByteRange): Promise<Readable> {
    return this.driver.read(blobKey(digest), range);
  }

  /**
   * Store a blob from a stream: written to its key as a pending write, hashed on the way, and
   * committed only when the digest (and the size, when given) match. Existing blobs are left alone.
   */
  async put(digest: string, body: Readable, expectedSize?: number): Promise<{ size: number; created: boolean }> {
    digestHex(digest);
    // Refused only below the floor: a blob that does not fit at all ends in ENOSPC, cleanly.
    await this.space?.check(`blob ${digest}`);
    const hasher = new HashingStream();
    const w = await this.driver.create(blobKey(digest));
    try {
      await pipeline(body, hasher, w.stream);
      const got = hasher.digest();
      if (got !== digest) {
        throw new RegistryError('DIGEST_INVALID', `digest mismatch: want ${digest}, got ${got}`);
      }
      if (expectedSize !== undefined && hasher.bytes !== expectedSize) {
        throw new RegistryError('SIZE_INVALID', `size mismatch for ${digest}: want ${expectedSize} bytes, got ${hasher.bytes}`);
      }
      const existing = await this.size(digest);
      if (existing !== null) {
        await w.cancel();
        return { size: existing, created: false };
      }
      await w.commit();
      return { size: hasher.bytes, created: true };
    } catch (e) {
      await w.cancel().catch(() => {});
      // The body's side of the pipe may report the disk's raw error first.
      const err = fromFsError(e, blobKey(digest));
      if (isRegistryError(err) && err.code === 'INSUFFICIENT_STORAGE') {
        throw new RegistryError('INSUFFICIENT_STORAGE', `no space left on the registry's disk for blob ${digest}; nothing of it was kept`, { cause: e });
      }
      throw e;
    }
  }

  /**
   * Publish a local (scratch) file whose sha256 was checked: putFile into place (a rename on one
   * filesystem), or dropped when the blob is already there. The file is consumed either way.
   */
  async publishFile(localPath: string, digest: string): Promise<void> {
    digestHex(digest);
    if ((await this.size(digest)) === null) await this.driver.putFile(localPath, blobKey(digest));
    else await unlink(localPath).catch(() => {});
  }

  /** sha256 of whatever is stored at a key. */
  async hashKey(key: string): Promise<{ digest: string; size: number }> {
    const hasher = new HashingStream();
    await pipeline(await this.driver.read(key), hasher, async function (src) {
      for await (const _ of src) { /* drain */ }
    });
    return { digest: hasher.digest(), size: hasher.bytes };
  }

  async delete(digest: string): Promise<void> {
    await this.driver.delete(blobKey(digest));
  }

  /** How many blobs, and their bytes (a stat per blob: callers cache it). */
  async usage(): Promise<{ count: number; bytes: number }> {
    let count = 0;
    let bytes = 0;
    for (const d of await this.list()) {
      const size = await this.size(d).catch(() => null);
      if (size !== null) {
        count++;
        bytes += size;
      }
    }
    return { count, bytes };
  }

  /** Every stored blob's digest (files that are not blobs are skipped). */
  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const f of await this.driver.list(BLOBS)) {
      const d = digestFromBlobFileName(f);
      if (d && f.startsWith('sha256-')) out.push(d);
    }
    return out;
  }
}
