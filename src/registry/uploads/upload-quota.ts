// Quotas of push sessions (`uploads.*`): how many sessions a requester (a user, a key, or the
// address of an anonymous client) and everyone together may keep open, and how many bytes they
// may hold. The bytes of open sessions count as used space under `storage.maxSize` as well, so
// sessions nobody commits cannot fill the disk behind the size cap's back.
//
// Counted in memory and checked per chunk (no await between check and count, so parallel parts
// cannot both slip under a cap); rebuilt from the session folders at start-up.
import { Coalesce } from '../../coalesce.js';
import { formatBytes } from '../../cli/format.js';
import type { Config } from '../../config.js';
import { RegistryError } from '../../errors.js';

interface Session { owner: string; bytes: number; sinceMs: number }

/** Blob bytes in the store, recounted at most this often (a stat per blob). */
const STORE_RECOUNT_MS = 30_000;
/** The tally of every session together (no owner label is empty). */
const ALL = '';

interface Tally { sessions: number; bytes: number }

export class UploadQuota {
  private sessions = new Map<string, Session>();
  /** Running totals per owner and for everyone (''), so a chunk's check costs O(1). */
  private tallies = new Map<string, Tally>();
  private store?: { at: number; bytes: number };
  private counting = new Coalesce<'store', void>();

  constructor(private readonly config: Pick<Config, 'uploads' | 'storage'>, private readonly storeBytes: () => Promise<number>) {}

  private tally(owner: string): Tally {
    let t = this.tallies.get(owner);
    if (!t) this.tallies.set(owner, (t = { sessions: 0, bytes: 0 }));
    return t;
  }

  private add(s: Session, sessions: number, bytes: number): void {
    for (const t of [this.tally(s.owner), this.tally(ALL)]) {
      t.sessions += sessions;
      t.bytes += bytes;
    }
    s.bytes += bytes;
    if (this.tally(s.owner).sessions === 0) this.tallies.delete(s.owner);
  }

  /** Bytes held by open sessions, all together or of one owner. */
  bytes(owner = ALL): number {
    return this.tallies.get(owner)?.bytes ?? 0;
  }

  /** A session found on disk at start-up. */
  restore(id: string, owner: string, bytes: number): void {
    this.close(id);
    const s = { owner, bytes: 0, sinceMs: Date.now() };
    this.sessions.set(id, s);
    this.add(s, 1, bytes);
  }

  /** Count a new session of `owner`, or refuse it (429) when a session cap is reached. */
  open(id: string, owner: string): void {
    const q = this.config.uploads;
    const mine = this.tallies.get(owner)?.sessions ?? 0;
    if (q.maxSessionsPerClient > 0 && mine >= q.maxSessionsPerClient) {
      throw new RegistryError('TOOMANYREQUESTS', `${owner} has ${mine} upload sessions open, the most uploads.maxSessionsPerClient allows; finish or cancel one (DELETE), or wait for it to expire`);
    }
    const all = this.tallies.get(ALL)?.sessions ?? 0;
    if (q.maxSessions > 0 && all >= q.maxSessions) {
      throw new RegistryError('TOOMANYREQUESTS', `the registry has ${all} upload sessions open, the most uploads.maxSessions allows; try again later`);
    }
    this.restore(id, owner, 0);
  }

  /** Recount the store's blob bytes when the count is stale (before a part, not per chunk). */
  async refresh(): Promise<void> {
    if (!this.config.storage.maxSize || (this.store && Date.now() - this.store.at < STORE_RECOUNT_MS)) return;
    await this.counting.run('store', () => this.storeBytes().then((bytes) => { this.store = { at: Date.now(), bytes }; }));
  }

  /** `n` more bytes for a session: counted, or refused (507) when a byte cap or storage.maxSize would be passed. */
  grow(id: string, n: number): void {
    const s = this.sessions.get(id);
    if (!s) return; // a session this process does not count (removed meanwhile)
    const q = this.config.uploads;
    const mine = this.bytes(s.owner);
    if (q.maxBytesPerClient > 0 && mine + n > q.maxBytesPerClient) {
      throw new RegistryError('INSUFFICIENT_STORAGE', `${s.owner} holds ${formatBytes(mine)} in open upload sessions; ` +
        `this part would pass uploads.maxBytesPerClient (${formatBytes(q.maxBytesPerClient)}): commit or cancel other uploads first`);
    }
    const all = this.bytes();
    if (q.maxBytes > 0 && all + n > q.maxBytes) {
      throw new RegistryError('INSUFFICIENT_STORAGE', `open upload sessions hold ${formatBytes(all)}; this part would pass uploads.maxBytes (${formatBytes(q.maxBytes)}); try again later`);
    }
    const cap = this.config.storage.maxSize;
    if (cap > 0 && this.store && this.store.bytes + all + n > cap) {
      throw new RegistryError('INSUFFICIENT_STORAGE',
        `blobs (${formatBytes(this.store.bytes)}) and open uploads (${formatBytes(all)}) fill storage.maxSize (${formatBytes(cap)}); gc evicts cached models to make room`);
    }
    this.add(s, 0, n);
  }

  /** A session's bytes after a part was cut back. */
  set(id: string, bytes: number): void {
    const s = this.sessions.get(id);
    if (s) this.add(s, 0, bytes - s.bytes);
  }

  /** Forget sessions whose folders were gone at `listedMs` (removed by `gc` in another process). */
  keepOnly(present: Set<string>, listedMs: number): void {
    for (const [id, s] of [...this.sessions]) if (!present.has(id) && s.sinceMs < listedMs) this.close(id);
  }

  /** A session committed, cancelled or purged: it no longer counts. */
  close(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    this.add(s, -1, -s.bytes);
  }
}
