// Leases: who does one piece of work (a fill, gc, an upload session) across processes and
// machines that share a store. A lease is a small record taken with createIfAbsent and renewed
// with replaceIf; a holder that stops renewing loses it at `expires`, and whoever takes it over
// gets a higher fencing token, so late writes of the old holder can be told apart.
import type { Driver } from './driver.js';

export interface LeaseRecord {
  /** Who holds it: unique per process (e.g. its hostname and a random part). */
  owner: string;
  /** Where other processes can reach the holder (e.g. to read a fill's bytes), if anywhere. */
  url?: string;
  /** The holder's machine and local scratch folder: a process on the same machine reads its files there. */
  host?: string;
  scratch?: string;
  /** Epoch ms after which the lease is free. */
  expires: number;
  /** Grows by one at every change of holder. */
  token: number;
}

export interface Lease {
  key: string;
  record: LeaseRecord;
  version: string;
}

export type Acquired = { lease: Lease } | { heldBy: LeaseRecord };

function parse(body: Buffer): LeaseRecord | null {
  try {
    const r = JSON.parse(body.toString('utf8')) as Partial<LeaseRecord>;
    if (typeof r.owner !== 'string' || typeof r.expires !== 'number' || !Number.isSafeInteger(r.token)) return null;
    const opt = (v: unknown) => (typeof v === 'string' ? v : undefined);
    return { owner: r.owner, url: opt(r.url), host: opt(r.host), scratch: opt(r.scratch), expires: r.expires, token: r.token! };
  } catch {
    return null;
  }
}

const encode = (r: LeaseRecord): Buffer => Buffer.from(JSON.stringify(r));

/** The lease's holder now, or null when it is free (absent, expired or unreadable). */
export async function leaseHolder(driver: Driver, key: string, now = Date.now()): Promise<LeaseRecord | null> {
  const cur = await driver.readVersioned(key);
  const rec = cur && parse(cur.body);
  return rec && rec.expires > now ? rec : null;
}

/** Take the lease when it is free; otherwise say who holds it. */
export type Holder = Omit<LeaseRecord, 'expires' | 'token'>;

export async function acquireLease(driver: Driver, key: string, who: Holder, ttlMs: number, now = Date.now()): Promise<Acquired> {
  // A lease held by someone else is the common case for followers: learn it without a write.
  const held = await leaseHolder(driver, key, now);
  if (held && held.owner !== who.owner) return { heldBy: held };
  for (let attempt = 0; attempt < 3; attempt++) {
    const fresh: LeaseRecord = { ...who, expires: now + ttlMs, token: 1 };
    const created = await driver.createIfAbsent(key, encode(fresh));
    if (created) return { lease: { key, record: fresh, version: created } };
    const cur = await driver.readVersioned(key);
    if (!cur) continue; // released between the two calls
    const rec = parse(cur.body);
    if (rec && rec.expires > now && rec.owner !== who.owner) return { heldBy: rec };
    const next: LeaseRecord = { ...fresh, token: (rec?.token ?? 0) + 1 };
    const version = await driver.replaceIf(key, encode(next), cur.version);
    if (version) return { lease: { key, record: next, version } };
  }
  const rec = await leaseHolder(driver, key, now);
  if (rec) return { heldBy: rec };
  throw new Error(`lease ${key}: could not be taken after 3 tries (contended)`);
}

/** Extend a held lease; null when it was lost (expired and taken over, or released). */
export async function renewLease(driver: Driver, lease: Lease, ttlMs: number, now = Date.now()): Promise<Lease | null> {
  const record = { ...lease.record, expires: now + ttlMs };
  const version = await driver.replaceIf(lease.key, encode(record), lease.version);
  return version ? { key: lease.key, record, version } : null;
}

/**
 * Give a lease up; a lease already taken over by another holder is left alone. It is overwritten
 * as expired rather than deleted: conditional deletes are not atomic on every store (Ceph 16
 * ignores If-Match on DELETE).
 */
export async function releaseLease(driver: Driver, lease: Lease): Promise<boolean> {
  return (await driver.replaceIf(lease.key, encode({ ...lease.record, expires: 0 }), lease.version)) !== null;
}

/** A lease this process holds and renews in the background until it releases it or loses it. */
export interface KeptLease {
  readonly lease: Lease;
  /** It was taken over (or could not be renewed before it expired): the work must stop, leaving its files. */
  readonly lost: boolean;
  /**
   * Give it up. `remove` deletes the record when the work is finished for good (a published blob):
   * nobody needs it any more, and a store that ignores If-Match on DELETE can only harm a taker that
   * would find nothing left to do.
   */
  release(remove?: boolean): Promise<void>;
}

/** Renew `lease` every third of its lifetime; `onLost` runs once when it is lost. */
export function keepLease(driver: Driver, lease: Lease, ttlMs: number, onLost: () => void): KeptLease {
  let current = lease;
  let lost = false;
  let busy = false;
  const lose = () => {
    if (lost) return;
    lost = true;
    clearInterval(timer);
    onLost();
  };
  const timer = setInterval(() => {
    if (busy || lost) return;
    busy = true;
    renewLease(driver, current, ttlMs)
      .then((next) => (next ? (current = next) : lose()))
      .catch(() => { if (Date.now() >= current.record.expires) lose(); }) // a store that cannot be reached: retry until it expires
      .finally(() => { busy = false; });
  }, Math.max(50, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    get lease() { return current; },
    get lost() { return lost; },
    async release(remove = false) {
      clearInterval(timer);
      while (busy) await new Promise((r) => setTimeout(r, 10));
      if (!lost) await (remove ? driver.deleteIf(current.key, current.version) : releaseLease(driver, current)).catch(() => false);
      lost = true;
    },
  };
}
