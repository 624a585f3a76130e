// The storage driver: bytes by key, nothing more. It knows no digests, names or HTTP, so a
// second driver (S3) only has to implement this interface and pass the conformance suite.
import type { Readable, Writable } from 'node:stream';

/** One stored object; a key that only prefixes others (a "folder") has no Stat. */
export interface Stat {
  size: number;
  /** When the object got its bytes (written, committed or brought in with putFile). */
  mtimeMs: number;
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
  /** How many listing requests it has made so far (stores that bill or throttle them: S3's LIST), for gc's report. */
  readonly listCalls?: number;
  stat(key: string): Promise<Stat | null>;
  /** Stream a file (or one byte range of it). Rejects with ENOENT when absent. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /** Optional fast path for read + pipe: write a file (or a range) into `out` and end it. */
  copyTo?(key: string, out: Writable, range?: ByteRange): Promise<void>;
  /** Small files only (manifests, state). */
  readAll(key: string): Promise<Buffer>;
  /** All-or-nothing: readers see the old content or the whole new content, never a part. */
  write(key: string, body: Readable | Buffer): Promise<{ size: number }>;
  /** Deletes one object; no error when absent. */
  delete(key: string): Promise<void>;
  /**
   * The next name segment of every key under `prefix/`, sorted, no duplicates; [] when none
   * (a tree walk by level; `entries` gives sizes and times).
   */
  list(prefix: string): Promise<string[]>;
  /**
   * Publish a local file (a scratch file) at `key`, whole or not at all. The file is consumed:
   * on one filesystem a rename, no copy; else a copy (fsynced) or, on S3, a multipart upload.
   * The key's time is the time of the putFile (a hard-linked import keeps no old time).
   */
  putFile(localPath: string, key: string): Promise<{ how: 'moved' | 'copied' }>;
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
  /**
   * Where a client that asked the registry at `registryUrl` (its origin, as the client used it) may
   * read the object itself: a presigned URL in redirect mode where ollama's clients follow it, else null.
   */
  redirectUrl?(key: string, registryUrl: string): Promise<string | null>;
  /**
   * Remove the driver's own leftovers of writers that stopped (staging files, abandoned multipart
   * uploads): older than `graceMs` when their writer is known to be gone, else older than `staleMs`.
   */
  sweep?(opts: { graceMs: number; staleMs: number; dryRun?: boolean }): Promise<{ removed: string[]; bytes: number }>;
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
