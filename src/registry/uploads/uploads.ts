// Push sessions (protocol §5). A session is a record in the store, .ollama-registry/uploads/<id>/info.json
// (rewritten now and then while parts arrive, so its time shows the session is alive), and its bytes
// in this process's scratch folder, <scratch>/uploads/<id>: parts are written there with O_DIRECT and
// the verified file is published with putFile (a rename on one filesystem). Both survive a restart;
// stale ones are purged. The bytes are local to the replica that opened the session; its record
// names that replica (`at`, its advertised URL), and another replica forwards the session's
// requests there (src/http/upload-forward.ts).
//
// Bytes arrive in order (PATCH with Content-Range S-E, or docker-style chunks without a range)
// and are hashed while they are written, so the commit needs no second pass over the data. A part
// is all-or-nothing: when it fails, the file is cut back to where the part started. ollama retries
// a failed part by re-sending the *same* range to the *same* URL, so a part may start anywhere up
// to the current size: the data is truncated to its start (distribution answers 416 there). The
// hash state at the start of the last part is kept, so retrying that part costs no re-hash; any
// other case (a restart, an older part) re-hashes the kept prefix once.
//
// ollama's transfer client opens a session per attempt at a blob (`POST ?digest=`) and never
// cancels one it gave up on; when the blob is committed, the other open sessions announced for
// it in that repository are removed, rather than held until they expire.
import { randomUUID, type Hash } from 'node:crypto';
import { open, stat, truncate, writeFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { fromFsError, RegistryError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Driver } from '../../storage/driver.js';
import { uploadInfoKey } from '../../storage/layout.js';
import { discard, scratchFile, scratchPath } from '../../storage/local.js';
import type { BlobStore } from '../blobs/blobs.js';
import type { DiskSpace } from '../housekeeping/disk-space.js';
import { onDirectIoRefused, PartWriter } from './part-writer.js';
import { hashPrefix, ID_RE, localSessions, localSessionBytes, readSession, sessionRecords, startSweeper, uploadRange } from './session-records.js';
import type { UploadQuota } from './upload-quota.js';

export interface UploadRepo {
  namespace: string;
  model: string;
}

export interface SessionInfo extends UploadRepo {
  id: string;
  createdMs: number;
  /** Who opened it (a user, a key, or an anonymous client's address): its quotas count it. */
  owner?: string;
  /** The digest announced when the session was opened (`POST ?digest=`), if any. */
  digest?: string;
  /** Who opened it (a token subject), so a restart keeps the pusher's access to what it committed. */
  by?: string;
  /** Set once committed: the digest the bytes were published as. */
  committed?: string;
  size?: number;
  /** The URL of the registry process that holds the bytes (storage.advertiseUrl, or its listen address). */
  at?: string;
}

interface HashState {
  hash: Hash;
  /** Bytes of the data file covered by `hash`. */
  at: number;
  /** Where the last part started, and the hash state there (to take a retried part cheaply). */
  partStart: number;
  partHash: Hash;
}

/** How often a live session's record is rewritten, so its time says it is alive (gc, other replicas). */
const TOUCH_MS = 60_000;
const AREA = 'uploads';

export class Uploads {
  private hashes = new Map<string, HashState>();
  /** Background flushes of finished parts, so the commit's fsync has little left to wait for. */
  private flushes = new Map<string, Promise<void>>();
  private active = new Map<string, () => void>();
  private locks = new Map<string, Promise<void>>();
  private counted?: Promise<void>;
  /** Open sessions announced for a blob, by `<repository>@<digest>` (in memory: after a restart, expiry removes them). */
  private announced = new Map<string, Set<string>>();
  private announcedAs = new Map<string, string>();
  private touched = new Map<string, number>();
  private self?: string;

  /** `scratch`: this process's local folder (App.scratch) that holds the sessions' bytes. */
  constructor(private readonly driver: Driver, private readonly scratch: string, private readonly blobs: BlobStore, private readonly log: Logger,
    private readonly limits: { quota?: UploadQuota; space?: DiskSpace } = {}) {
    onDirectIoRefused((e) => this.log.warn({ err: e }, 'the data folder refuses O_DIRECT writes; uploads are written through the page cache (more CPU per pushed GiB)'));
  }

  /** The URL other replicas reach this process at: new sessions name it as their owner. */
  advertise(url: string): void {
    this.self = url;
  }

  /**
   * Where a request on session `id` must go when another process holds its bytes: that process's
   * URL; undefined when this one handles it (its bytes are here, it is committed, or it names no owner).
   */
  async ownerElsewhere(id: string, repo: UploadRepo): Promise<string | undefined> {
    const info = await this.info(id, repo);
    if (info.committed || !info.at || info.at === this.self) return undefined;
    return (await stat(this.dataPath(id)).catch(() => null)) ? undefined : info.at;
  }

  private dataPath(id: string): string {
    return scratchPath(this.scratch, AREA, id);
  }

  /** Rewrite a live session's record now and then (its time is its last sign of life). */
  private async touch(id: string): Promise<void> {
    if (Date.now() - (this.touched.get(id) ?? 0) < TOUCH_MS) return;
    const body = await this.driver.readAll(uploadInfoKey(id));
    await this.driver.write(uploadInfoKey(id), body);
    this.touched.set(id, Date.now());
  }

  /** Runs `fn` alone on a session; `supersede` cuts a part still being received (its client gave up on it). */
  private async exclusive<T>(id: string, supersede: boolean, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    const chain = prev.then(() => mine);
    this.locks.set(id, chain);
    if (supersede) this.active.get(id)?.();
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(id) === chain) this.locks.delete(id);
    }
  }

  /** Count the sessions a previous run left (once, before the first quota decision). */
  private countOnDisk(): Promise<void> {
    const quota = this.limits.quota;
    this.counted ??= (async () => {
      if (!quota) return;
      for (const { id } of await sessionRecords(this.driver)) {
        const info = await readSession(this.driver, id);
        const st = await stat(this.dataPath(id)).catch(() => null);
        if (info && !info.committed && st) quota.restore(id, info.owner ?? 'unknown', st.size);
      }
    })();
    return this.counted;
  }

  /** Open a session for `owner`, within the session quotas and the free-space floor. */
  async create(repo: UploadRepo, digest?: string, owner = 'anonymous', by?: string): Promise<SessionInfo> {
    const info: SessionInfo = { id: randomUUID(), namespace: repo.namespace, model: repo.model, createdMs: Date.now(), owner, ...(digest ? { digest } : {}), ...(by ? { by } : {}),
      ...(this.self ? { at: this.self } : {}) };
    await this.countOnDisk();
    await this.limits.space?.check('a new upload');
    this.limits.quota?.open(info.id, owner);
    try {
      // The record first: a scratch file without one is a leftover that purge removes.
      await this.driver.write(uploadInfoKey(info.id), Buffer.from(JSON.stringify(info)));
      this.touched.set(info.id, Date.now());
      await writeFile(await scratchFile(this.scratch, AREA, info.id), '', { flag: 'wx' });
    } catch (e) {
      this.limits.quota?.close(info.id);
      await this.driver.delete(uploadInfoKey(info.id)).catch(() => {});
      await discard(this.dataPath(info.id));
      throw fromFsError(e, 'a new upload');
    }
    if (digest) {
      const k = announceKey(info, digest);
      this.announced.set(k, (this.announced.get(k) ?? new Set()).add(info.id));
      this.announcedAs.set(info.id, k);
    }
    return info;
  }

  private unannounce(id: string): void {
    const k = this.announcedAs.get(id);
    if (k === undefined) return;
    this.announcedAs.delete(id);
    const set = this.announced.get(k);
    set?.delete(id);
    if (set?.size === 0) this.announced.delete(k);
  }

  /** After `digest` was committed by `id`: remove the other sessions still open for it in that repository. */
  private dropAbandoned(repo: UploadRepo, digest: string, id: string): void {
    const k = announceKey(repo, digest);
    const others = [...(this.announced.get(k) ?? [])].filter((x) => x !== id);
    this.unannounce(id);
    if (others.length === 0) return;
    // Not awaited: each takes its own session's lock (a twin upload may hold it while committing).
    void Promise.all(others.map((other) => this.exclusive(other, true, async () => {
      const info = await readSession(this.driver, other);
      if (info && !info.committed) await this.removeLocked(other);
    }))).then(
      () => this.log.info({ digest, removed: others.length }, 'removed upload sessions a client left behind for a blob it has now pushed'),
      (e) => this.log.warn({ err: e, digest }, 'could not remove upload sessions left behind'),
    );
  }

  /** `n` bytes more for a session: within its quotas and the free-space floor, or a 507. */
  private async admit(id: string, n: number): Promise<void> {
    this.limits.quota?.grow(id, n);
    await this.limits.space?.take(`upload ${id}`, n);
  }

  /** The session, checked to belong to the repository in the request URL. */
  async info(id: string, repo: UploadRepo): Promise<SessionInfo> {
    const unknown = (why: string) => new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id.slice(0, 40)} ${why}; start the upload again`);
    if (!ID_RE.test(id)) throw unknown('is not an upload id of this registry');
    let info: SessionInfo;
    try {
      info = JSON.parse((await this.driver.readAll(uploadInfoKey(id))).toString('utf8')) as SessionInfo;
    } catch {
      throw unknown('is unknown: it was cancelled, or expired, or never existed');
    }
    if (info.namespace.toLowerCase() !== repo.namespace.toLowerCase() || info.model.toLowerCase() !== repo.model.toLowerCase()) {
      throw unknown(`belongs to another repository (${info.namespace}/${info.model})`);
    }
    return info;
  }

  /** Bytes received so far. */
  async status(id: string, repo: UploadRepo): Promise<SessionInfo & { size: number }> {
    const info = await this.info(id, repo);
    if (info.committed) return { ...info, size: info.size ?? 0 };
    const st = await stat(this.dataPath(id)).catch(() => null);
    if (!st) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} has lost its data; start the upload again`);
    return { ...info, size: st.size };
  }

  /**
   * Write one part at `start` (default: the end). `length`, when known from Content-Range, must
   * match the body. Returns the new size.
   */
  append(id: string, repo: UploadRepo, start: number | undefined, body: Readable, length?: number): Promise<number> {
    return this.exclusive(id, true, async () => {
      const info = await this.info(id, repo);
      if (info.committed) throw new RegistryError('BLOB_UPLOAD_INVALID', `upload ${id} was already committed as ${info.committed}; start a new upload`);
      return this.appendLocked(id, start, body, length);
    });
  }

  private async appendLocked(id: string, start: number | undefined, body: Readable, length?: number): Promise<number> {
    const file = this.dataPath(id);
    const size = (await stat(file).catch(() => null))?.size;
    if (size === undefined) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} has lost its data; start the upload again`);
    const at = start ?? size;
    if (at > size) {
      throw new RegistryError('RANGE_INVALID',
        `this upload has ${size} bytes so far; a part must start at byte ${size} or earlier (a retry may resend an earlier part), but this one starts at ${at}`,
        { headers: { Range: uploadRange(size) } });
    }
    let hs = this.hashes.get(id);
    if (hs && hs.partStart === at) {
      hs.hash = hs.partHash.copy();
      hs.at = at;
    } else if (!hs || hs.at !== at) {
      if (at > 0) this.log.debug({ upload: id, bytes: at }, 're-hashing the kept part of an upload');
      const hash = await hashPrefix(file, at);
      hs = { hash, at, partStart: at, partHash: hash.copy() };
    }
    hs.partStart = at;
    hs.partHash = hs.hash.copy();
    this.hashes.set(id, hs);
    const state = hs;
    let written = 0;
    await this.countOnDisk();
    await this.limits.quota?.refresh();
    this.active.set(id, () => body.destroy(new RegistryError('BLOB_UPLOAD_INVALID', 'this part was superseded by a newer request on the same upload')));
    try {
      if (size > at) await truncate(file, at);
      this.limits.quota?.set(id, at);
      // A part of known length is admitted whole before a byte is written; others chunk by chunk.
      if (length !== undefined) await this.admit(id, length);
      const out = await PartWriter.open(file, at, state.hash);
      try {
        // An async iterator: measured ~1 CPU-s per GiB cheaper than 'data' events (bench/push.ts, 3 rounds each).
        for await (const chunk of body as AsyncIterable<Buffer>) {
          written += chunk.length;
          if (length !== undefined && written > length) throw new RegistryError('SIZE_INVALID', `the part is longer than its Content-Range (${length} bytes)`);
          if (length === undefined) await this.admit(id, chunk.length);
          await out.push(chunk);
        }
        await out.finish();
      } finally {
        await out.close();
      }
      if (length !== undefined && written !== length) {
        throw new RegistryError('SIZE_INVALID', `the part has ${written} bytes but its Content-Range says ${length}`);
      }
    } catch (e) {
      // All or nothing: back to where the part started, so the client can send it again.
      await truncate(file, at).catch(() => {});
      this.limits.quota?.set(id, at);
      state.hash = state.partHash.copy();
      state.at = at;
      throw fromFsError(e, `upload ${id}`);
    } finally {
      this.active.delete(id);
    }
    state.at = at + written;
    this.flushInBackground(id, file);
    await this.touch(id);
    return state.at;
  }

  /**
   * Verify the sha256 of everything received (after an optional last part) and publish the blob.
   * A mismatch discards the session, so nothing of it stays.
   */
  commit(id: string, repo: UploadRepo, digest: string, last?: { start?: number; body: Readable; length?: number }): Promise<{ size: number; already: boolean }> {
    return this.exclusive(id, true, async () => {
      const info = await this.info(id, repo);
      if (info.committed) {
        // A commit retried after its answer was lost.
        const size = await this.blobs.size(digest);
        if (info.committed === digest && size !== null) return { size, already: true };
        throw new RegistryError('BLOB_UPLOAD_INVALID', `upload ${id} was already committed as ${info.committed}; start a new upload`);
      }
      if (info.digest && info.digest !== digest) {
        throw new RegistryError('DIGEST_INVALID', `this upload was opened for ${info.digest} but the commit names ${digest}`);
      }
      if (last) await this.appendLocked(id, last.start, last.body, last.length);
      const file = this.dataPath(id);
      const size = (await stat(file)).size;
      const hs = this.hashes.get(id);
      const got = hs && hs.at === size ? `sha256:${hs.hash.copy().digest('hex')}` : `sha256:${(await hashPrefix(file, size)).digest('hex')}`;
      if (got !== digest) {
        await this.removeLocked(id);
        throw new RegistryError('DIGEST_INVALID', `digest mismatch: the ${size} bytes received hash to ${got}, but the commit names ${digest}; the upload was discarded, push the blob again`);
      }
      await this.flushes.get(id);
      const fh = await open(file, 'r');
      await fh.sync().finally(() => fh.close());
      try {
        await this.blobs.publishFile(file, digest);
        await this.driver.write(uploadInfoKey(id), Buffer.from(JSON.stringify({ ...info, committed: digest, size })));
      } catch (e) {
        throw fromFsError(e, `blob ${digest}`);
      }
      this.hashes.delete(id);
      this.limits.quota?.close(id);
      this.dropAbandoned(info, digest, id);
      return { size, already: false };
    });
  }

  /** Start writing a finished part to disk while the next one arrives (one flush at a time). */
  private flushInBackground(id: string, file: string): void {
    const prev = this.flushes.get(id) ?? Promise.resolve();
    const next = prev.then(async () => {
      const fh = await open(file, 'r');
      await fh.datasync().finally(() => fh.close());
    }).catch(() => { /* the commit's own fsync reports real failures */ });
    this.flushes.set(id, next);
    void next.then(() => { if (this.flushes.get(id) === next) this.flushes.delete(id); });
  }

  cancel(id: string, repo: UploadRepo): Promise<void> {
    return this.exclusive(id, true, async () => {
      await this.info(id, repo);
      await this.removeLocked(id);
    });
  }

  private async removeLocked(id: string): Promise<void> {
    this.hashes.delete(id);
    this.unannounce(id);
    this.limits.quota?.close(id);
    this.touched.delete(id);
    await discard(this.dataPath(id));
    await this.driver.delete(uploadInfoKey(id));
  }

  /**
   * Remove sessions (and commit markers) untouched for `maxAgeMs`, and scratch files without a
   * record that are older than `orphanMs` (default: `maxAgeMs`). Returns the ids removed.
   */
  async purge(maxAgeMs: number, opts: { orphanMs?: number; dryRun?: boolean } = {}): Promise<Array<{ id: string; bytes: number }>> {
    const removed: Array<{ id: string; bytes: number }> = [];
    const listedMs = Date.now();
    const records = new Map((await sessionRecords(this.driver)).map((r) => [r.id, r.mtimeMs]));
    const local = await localSessions(this.scratch, AREA);
    this.limits.quota?.keepOnly(new Set([...records.keys(), ...local]), listedMs);
    for (const id of new Set([...records.keys(), ...local])) {
      if (this.locks.has(id)) continue;
      const data = await stat(this.dataPath(id)).catch(() => null);
      const recordMs = records.get(id);
      const newest = Math.max(recordMs ?? 0, data?.mtimeMs ?? 0);
      const limit = recordMs === undefined ? (opts.orphanMs ?? maxAgeMs) : maxAgeMs;
      if (Date.now() - newest <= limit) continue;
      if (!opts.dryRun) await this.removeLocked(id);
      removed.push({ id, bytes: data?.size ?? 0 });
    }
    return removed;
  }

  /** Bytes held by this process's open sessions (they count under the storage cap). */
  openBytes(): Promise<number> {
    return localSessionBytes(this.scratch, AREA);
  }

  /** Purge now and then periodically; returns the function that stops it. */
  startSweeper(maxAgeMs: number): () => void {
    return startSweeper(this, this.log, maxAgeMs);
  }
}

const announceKey = (repo: UploadRepo, digest: string) => `${repo.namespace}/${repo.model}@${digest}`.toLowerCase();
