// The storage driver: bytes by key, nothing more. It knows no digests, names or HTTP, so a
// second driver (S3) only has to implement this interface and pass the conformance suite.
import type { Readable, Writable } from 'node:stream';

export interface Stat {
  size: number;
  mtimeMs: number;
  /** When the file was last linked, renamed or written (where the driver can tell). */
  ctimeMs?: number;
  isDir: boolean;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/** One stored object, as `entries` lists it. */
export interface Entry {
  key: string;
  size: number;
  mtimeMs: number;
}

/** A write that nobody sees before `commit()`; `cancel()` leaves nothing behind. */
export interface PendingWrite {
  readonly stream: Writable;
  /** Ends the stream if needed, waits for the bytes to be durable, then makes the key visible. */
  commit(): Promise<{ size: number }>;
  cancel(): Promise<void>;
}

/** A small record and an opaque version, for conditional writes. */
export interface Versioned {
  body: Buffer;
  version: string;
}

export interface Driver {
  /** Where this driver keeps its bytes, for messages. */
  readonly description: string;
  stat(key: string): Promise<Stat | null>;
  /** Stream a file (or one byte range of it). Rejects with ENOENT when absent. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /** Optional fast path for read + pipe: write a file (or a range) into `out` and end it. */
  copyTo?(key: string, out: Writable, range?: ByteRange): Promise<void>;
  /** Small files only (manifests, state). */
  readAll(key: string): Promise<Buffer>;
  /** All-or-nothing: readers see the old content or the whole new content, never a part. */
  write(key: string, body: Readable | Buffer): Promise<{ size: number }>;
  /** Atomic rename within the store; replaces `to`. */
  move(from: string, to: string): Promise<void>;
  /** No error when absent. A folder key is removed only when empty. */
  delete(key: string): Promise<void>;
  /** Names of the immediate children of a folder key, sorted; [] when absent. */
  list(prefix: string): Promise<string[]>;
  /**
   * Bring an outside file into the store at `key` atomically, cheaply where possible
   * (a hard link on the same filesystem). Returns how it was done.
   */
  ingestFile(sourcePath: string, key: string): Promise<'linked' | 'copied'>;
  /** A streamed write to `key` (on S3: a multipart upload to the final key). */
  create(key: string): Promise<PendingWrite>;
  /** Every object under `prefix` ('' for all), at any depth, sorted by key. */
  entries(prefix: string): AsyncIterable<Entry>;
  /** A small record with its version, or null when absent. */
  readVersioned(key: string): Promise<Versioned | null>;
  /** Writes only when `key` is absent; the new version, or null when it existed. */
  createIfAbsent(key: string, body: Buffer): Promise<string | null>;
  /** Replaces only when the current version is `version`; the new version, or null. */
  replaceIf(key: string, body: Buffer, version: string): Promise<string | null>;
  /** Deletes only when the current version is `version`; false when it was not. */
  deleteIf(key: string, version: string): Promise<boolean>;
  /** A URL that reads the object without credentials for `ttlSeconds` (object stores only). */
  presign?(key: string, ttlSeconds: number): Promise<string>;
  /** Bytes used and free on the storage, where the driver can tell. */
  space?(): Promise<{ total: number; free: number } | null>;
}

/** `readAll`, or null when the key is absent (a file removed between listing and reading is not an error). */
export async function readAllIfExists(driver: Driver, key: string): Promise<Buffer | null> {
  try {
    return await driver.readAll(key);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
