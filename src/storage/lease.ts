// Leases: who does one piece of work (a fill, gc, an upload session) across processes and
// machines that share a store. A lease is a small record taken with createIfAbsent and renewed
// with replaceIf; a holder that stops renewing loses it at `expires`, and whoever takes it over
// gets a higher fencing token, so late writes of the old holder can be told apart.
import type { Driver } from './driver.js';

export interface LeaseRecord {
  /** Who holds it: unique per process (e.g. hostname, pid and a random part). */
  owner: string;
  /** Where other processes can reach the holder (e.g. to read a fill's bytes), if anywhere. */
  url?: string;
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
    return { owner: r.owner, url: typeof r.url === 'string' ? r.url : undefined, expires: r.expires, token: r.token! };
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
export async function acquireLease(driver: Driver, key: string, who: { owner: string; url?: string }, ttlMs: number, now = Date.now()): Promise<Acquired> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const fresh: LeaseRecord = { owner: who.owner, url: who.url, expires: now + ttlMs, token: 1 };
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
