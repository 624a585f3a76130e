// Blobs by sha256 digest. A blob becomes visible only after its bytes were hashed and matched.
import { pipeline } from 'node:stream/promises';
import { Readable, type Writable } from 'node:stream';
import { fromFsError, isRegistryError, RegistryError } from '../../errors.js';
import { digestFromBlobFileName, digestHex } from '../../names.js';
import type { ByteRange, Driver } from '../../storage/driver.js';
import { BLOBS, blobKey, stagingKey } from '../../storage/layout.js';
import type { DiskSpace } from '../housekeeping/disk-space.js';
import { HashingStream } from './hashing.js';

export class BlobStore {
  /** `space`: writes are refused below the free-space floor (storage.minFree). */
  constructor(readonly driver: Driver, private readonly space?: DiskSpace) {}

  /** Size of a stored blob, or null. Throws DIGEST_INVALID for a malformed digest. */
  async size(digest: string): Promise<number | null> {
    const st = await this.driver.stat(blobKey(digest));
    return st && !st.isDir ? st.size : null;
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
   * Store a blob from a stream: staged, hashed while written, published by an atomic move
   * only when the digest (and the size, when given) match. Existing blobs are left alone.
   */
  async put(digest: string, body: Readable, expectedSize?: number): Promise<{ size: number; created: boolean }> {
    digestHex(digest);
    // Refused only below the floor: a blob that does not fit at all ends in ENOSPC, cleanly.
    await this.space?.check(`blob ${digest}`);
    const staging = stagingKey();
    const hasher = new HashingStream();
    try {
      const written = this.driver.write(staging, hasher);
      await Promise.all([pipeline(body, hasher), written]);
      const got = hasher.digest();
      if (got !== digest) {
        throw new RegistryError('DIGEST_INVALID', `digest mismatch: want ${digest}, got ${got}`);
      }
      if (expectedSize !== undefined && hasher.bytes !== expectedSize) {
        throw new RegistryError('SIZE_INVALID', `size mismatch for ${digest}: want ${expectedSize} bytes, got ${hasher.bytes}`);
      }
      const existing = await this.size(digest);
      if (existing !== null) {
        await this.driver.delete(staging);
        return { size: existing, created: false };
      }
      await this.driver.move(staging, blobKey(digest));
      return { size: hasher.bytes, created: true };
    } catch (e) {
      await this.driver.delete(staging).catch(() => {});
      // The body's side of the pipe may report the disk's raw error first.
      const err = fromFsError(e, blobKey(digest));
      if (isRegistryError(err) && err.code === 'INSUFFICIENT_STORAGE') {
        throw new RegistryError('INSUFFICIENT_STORAGE', `no space left on the registry's disk for blob ${digest}; nothing of it was kept`, { cause: e });
      }
      throw e;
    }
  }

  /** Publish an already-staged file after hashing it; the staged file is consumed either way. */
  async publishStaged(staging: string, digest: string): Promise<{ size: number }> {
    try {
      const got = await this.hashKey(staging);
      if (got.digest !== digest) {
        throw new RegistryError('DIGEST_INVALID', `digest mismatch: want ${digest}, got ${got.digest}`);
      }
      if ((await this.size(digest)) === null) await this.driver.move(staging, blobKey(digest));
      else await this.driver.delete(staging);
      return { size: got.size };
    } catch (e) {
      await this.driver.delete(staging).catch(() => {});
      throw e;
    }
  }

  /**
   * Publish a file whose sha256 the caller computed while it was written (a push session):
   * an atomic move into place, or dropped when the blob is already there.
   */
  async publishVerified(key: string, digest: string): Promise<void> {
    digestHex(digest);
    if ((await this.size(digest)) === null) await this.driver.move(key, blobKey(digest));
    else await this.driver.delete(key);
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
