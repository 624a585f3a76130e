// Garbage collection, safe while the server serves, pushes and fills:
//  - mark: every blob any manifest file of any host folder references (config included; for a
//    file that does not parse, every sha256 in it);
//  - size cap: evict least-recently-pulled cached tags (never pushed/local or pinned ones) until
//    the blobs left fit; a blob shared by several tags goes only with the last of them;
//  - sweep: delete unreferenced blobs, but never one younger than the grace period (a push
//    commits its blobs before its manifest; a fill publishes a blob before anyone references it),
//    and re-check the references right before each delete;
//  - manifests stored by digest only: kept while live (manifest-index.ts), else their marker goes
//    and their bytes' blob with the sweep;
//  - the driver's own leftovers (driver.sweep: e.g. staging files of stopped writers), upload
//    sessions nobody touched for a day (their record's time; uploads.ts rewrites it while parts
//    arrive) or, after the grace period, scratch bytes without a record, and fill folders of older
//    versions idle for a day, or after the grace period when they hold no state.json. Nothing here
//    asks whether a process is alive: the store's records and their times decide.
// Blobs published after the listing are never candidates. One gc at a time among the processes
// sharing the store: it holds a lease (leases/gc) while it deletes, and stops if it loses it.
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { App } from '../../app.js';
import { RegistryError } from '../../errors.js';
import { digestFromBlobFileName } from '../../names.js';
import { BLOBS, blobKey, fillsDir, gcLeaseKey, uploadsDir } from '../../storage/layout.js';
import { acquireLease, keepLease, type KeptLease, type LeaseRecord } from '../../storage/lease.js';
import { sweepFills } from '../pull-through/fill-scratch.js';
import { ManifestIndex, type ManifestEntry } from '../manifests/manifest-index.js';
import { Pins } from './pins.js';
import { cachedHostRecord, isCachedHost } from './sources.js';
import { UsageTracker } from './usage.js';

export interface GcOptions {
  dryRun?: boolean;
  /** Never delete a blob (or staging file) younger than this. */
  graceMs: number;
  /** Evict cached tags while blobs take more than this many bytes (0/undefined: no cap). */
  maxSize?: number;
  /** Last pulls (inside `serve`: the live tracker, so nothing recorded is missed). */
  usage?: UsageTracker;
  /** Upload sessions and fill folders idle longer than this are removed (default 24 h). */
  staleSessionMs?: number;
  /** The manifest tree is re-read before a delete when the last read is older than this (default 25 ms). */
  recheckMs?: number;
  /** Test seams: pause after listing, or before a delete. */
  hooks?: { afterList?: () => Promise<void>; beforeDelete?: (digest: string) => Promise<void> };
  onProgress?: (done: number, total: number) => void;
}

export interface GcReport {
  dryRun: boolean;
  manifests: number;
  blobs: { total: number; referenced: number; young: number; rescued: number };
  removed: Array<{ digest: string; size: number }>;
  bytesFreed: number;
  evicted: Array<{ name: string; lastPulled: number; freed: number }>;
  /** Manifests stored by digest only that nothing kept (host/ns/model@digest); their blobs go in the sweep. */
  untaggedRemoved: string[];
  staging: { removed: string[]; bytes: number };
  /** Blob bytes left (projected, for a dry run). */
  usedBytes: number;
  /** Bytes still above the cap after eviction (what is left is pinned, local or in use). */
  overCap: number;
  warnings: string[];
  /** Listing requests the run made (S3: ListObjectsV2 pages), where the driver counts them. */
  listCalls?: number;
}

/** Another process runs gc now (it holds the gc lease). */
export class GcRunning extends RegistryError {
  constructor(readonly holder: LeaseRecord) {
    super('UNAVAILABLE', `gc is already running in another process (${holder.owner}); try again later`);
  }
}

interface BlobStat {
  size: number;
  /** When the key got its bytes (putFile sets it, also for a hard-linked import). */
  changedMs: number;
}

export async function runGc(app: App, opts: GcOptions): Promise<GcReport> {
  const lists = app.driver.listCalls;
  const counted = (r: GcReport) => (lists === undefined ? r : { ...r, listCalls: app.driver.listCalls! - lists });
  if (opts.dryRun) return counted(await collect(app, opts, null));
  const ttl = app.config.storage.leaseSeconds * 1000;
  const taken = await acquireLease(app.driver, gcLeaseKey(), { owner: `${os.hostname()}/gc-${randomUUID()}`, host: os.hostname() }, ttl);
  if ('heldBy' in taken) throw new GcRunning(taken.heldBy);
  const lease = keepLease(app.driver, taken.lease, ttl, () => {});
  try {
    return counted(await collect(app, opts, lease));
  } finally {
    await lease.release(true);
  }
}

async function collect(app: App, opts: GcOptions, lease: KeptLease | null): Promise<GcReport> {
  // Before every change: a gc that lost its lease (a store it could not reach for a lease's life) stops.
  const owns = () => {
    if (lease?.lost) throw new RegistryError('UNAVAILABLE', 'gc lost its lease (the store did not answer for too long, or another process took it over); stopped');
  };
  const now = Date.now();
  const dry = opts.dryRun === true;
  const usage = opts.usage ?? new UsageTracker(app.driver);
  const index = new ManifestIndex(app.driver);
  await index.refresh();
  const blobs = new Map<string, BlobStat>();
  for await (const e of app.driver.entries(BLOBS)) {
    const name = e.key.slice(BLOBS.length + 1);
    const digest = name.startsWith('sha256-') ? digestFromBlobFileName(name) : null;
    if (digest) blobs.set(digest, { size: e.size, changedMs: e.mtimeMs });
  }
  await opts.hooks?.afterList?.();
  const report: GcReport = {
    dryRun: dry, manifests: index.list().length,
    blobs: { total: blobs.size, referenced: 0, young: 0, rescued: 0 },
    removed: [], bytesFreed: 0, evicted: [], untaggedRemoved: [], staging: { removed: [], bytes: 0 }, usedBytes: 0, overCap: 0,
    warnings: index.list().filter((e) => e.error).map((e) => `${e.key}: ${e.error}` + (e.digests.length ? ` (the ${e.digests.length} blob(s) it names are kept)` : '')),
  };
  const isYoung = (b: BlobStat) => now - b.changedMs < opts.graceMs;

  // Size cap: plan on reference counts, then delete the planned tags' manifests.
  const excluded = new Set<string>();
  if (opts.maxSize && opts.maxSize > 0) {
    // Open push sessions take room under the cap too (registry/uploads/upload-quota.ts).
    const uploads = await app.uploads.openBytes();
    const plan = await planEviction(app, index.list(), blobs, opts.maxSize - uploads, usage, now, opts.graceMs, isYoung);
    for (const p of plan.evict) {
      if (!dry) {
        // A pull since the plan was made keeps the tag.
        const again = (await usage.all()).get(p.entry.name) ?? 0;
        if (now - again < opts.graceMs) continue;
        owns();
        await app.manifests.delete(p.entry.ref!);
      }
      excluded.add(p.entry.key);
      report.evicted.push({ name: p.entry.name, lastPulled: p.lastPulled, freed: p.freed });
    }
    if (!dry) await index.refresh();
  }

  // Untagged manifests no list, subject or tagged manifest keeps, past the grace period.
  for (const u of index.deadUntagged(opts.graceMs, now)) {
    if (!dry) {
      const st = await app.driver.stat(u.key);
      if (!st || now - st.mtimeMs < opts.graceMs) continue; // pushed again meanwhile
      owns();
      await app.driver.delete(u.key);
    }
    report.untaggedRemoved.push(u.name);
  }
  if (!dry && report.untaggedRemoved.length) await index.refresh();

  // Sweep.
  const referenced = index.referenced(dry ? excluded : undefined, opts.graceMs, now);
  const candidates = [...blobs].filter(([d]) => !referenced.has(d));
  report.blobs.referenced = blobs.size - candidates.length;
  let lastRead = Date.now();
  const recheckMs = opts.recheckMs ?? 25;
  let done = 0;
  for (const [digest, b] of candidates) {
    opts.onProgress?.(done++, candidates.length);
    if (isYoung(b)) {
      report.blobs.young++;
      continue;
    }
    await opts.hooks?.beforeDelete?.(digest);
    if (!dry) {
      if (opts.hooks?.beforeDelete || Date.now() - lastRead >= recheckMs) {
        await index.refresh();
        lastRead = Date.now();
      }
      const st = await app.driver.stat(blobKey(digest));
      if (!st) continue; // someone else removed it
      if (index.has(digest) || Date.now() - st.mtimeMs < opts.graceMs) {
        report.blobs.rescued++;
        continue;
      }
      owns();
      await app.blobs.delete(digest);
    }
    report.removed.push({ digest, size: b.size });
    report.bytesFreed += b.size;
  }
  opts.onProgress?.(candidates.length, candidates.length);

  if (!dry) owns();
  report.staging = await sweepStaging(app, now, opts.graceMs, opts.staleSessionMs ?? 24 * 3600_000, dry);
  const fills = await sweepFills(app.driver, app.scratch, now, { graceMs: opts.graceMs, staleMs: opts.staleSessionMs ?? 24 * 3600_000 }, dry);
  report.staging.removed.push(...fills.removed);
  report.staging.bytes += fills.bytes;
  let used = 0;
  for (const b of blobs.values()) used += b.size;
  report.usedBytes = used - report.bytesFreed;
  if (opts.maxSize && report.usedBytes > opts.maxSize) report.overCap = report.usedBytes - opts.maxSize;
  // Forget last pulls of tags that are gone.
  if (!dry) await usage.flush(new Set(index.list().map((e) => e.name))).catch((e) => report.warnings.push(`cannot update last pulls: ${(e as Error).message}`));
  return report;
}

interface Plan {
  evict: Array<{ entry: ManifestEntry; lastPulled: number; freed: number }>;
}

async function planEviction(app: App, entries: ManifestEntry[], blobs: Map<string, BlobStat>, maxSize: number,
  usage: UsageTracker, now: number, graceMs: number, isYoung: (b: BlobStat) => boolean): Promise<Plan> {
  const refs = new Map<string, number>();
  for (const e of entries) for (const d of e.digests) refs.set(d, (refs.get(d) ?? 0) + 1);
  // What stays after the sweep anyway: referenced blobs and young ones.
  let used = 0;
  for (const [d, b] of blobs) if ((refs.get(d) ?? 0) > 0 || isYoung(b)) used += b.size;
  const pins = await new Pins(app.driver).list();
  const recorded = await cachedHostRecord(app.driver).list();
  const pulls = await usage.all();
  const lastPulled = (e: ManifestEntry) => Math.max(pulls.get(e.name) ?? 0, e.mtimeMs);
  const candidates = entries
    .filter((e) => e.ref && isCachedHost(app.config, e.ref.host, recorded) && !pins.has(e.name) && now - lastPulled(e) >= graceMs)
    .sort((a, b) => lastPulled(a) - lastPulled(b) || (a.name < b.name ? -1 : 1));
  const plan: Plan = { evict: [] };
  for (const entry of candidates) {
    if (used <= maxSize) break;
    let freed = 0;
    for (const d of entry.digests) {
      const left = (refs.get(d) ?? 1) - 1;
      refs.set(d, left);
      const b = blobs.get(d);
      if (left === 0 && b && !isYoung(b)) freed += b.size;
    }
    used -= freed;
    plan.evict.push({ entry, lastPulled: lastPulled(entry), freed });
  }
  return plan;
}

/** Leftovers of writers that stopped: the driver's own, upload sessions, fill folders of older versions. */
async function sweepStaging(app: App, now: number, graceMs: number, staleMs: number, dry: boolean): Promise<{ removed: string[]; bytes: number }> {
  const out = { removed: [] as string[], bytes: 0 };
  const own = await app.driver.sweep?.({ graceMs, staleMs: Math.max(staleMs, graceMs), dryRun: dry });
  if (own) {
    out.removed.push(...own.removed);
    out.bytes += own.bytes;
  }
  for (const u of await app.uploads.purge(Math.max(staleMs, graceMs), { orphanMs: graceMs, dryRun: dry })) {
    out.removed.push(`${uploadsKeyPrefix}/${u.id}`);
    out.bytes += u.bytes;
  }
  // Fill folders (fills/sha256-<hex>/{data,state.json,lock}), by their files' times.
  const folders = new Map<string, Array<{ key: string; size: number; mtimeMs: number }>>();
  for await (const e of app.driver.entries(fillsDir())) {
    const folder = e.key.split('/').slice(0, 3).join('/');
    folders.set(folder, [...(folders.get(folder) ?? []), e]);
  }
  for (const [folder, files] of folders) {
    const newest = Math.max(...files.map((f) => f.mtimeMs));
    const idle = files.some((f) => f.key === `${folder}/state.json`) ? Math.max(staleMs, graceMs) : graceMs;
    if (now - newest < idle) continue;
    if (!dry) for (const f of files) await app.driver.delete(f.key);
    out.removed.push(folder);
    out.bytes += files.reduce((n, f) => n + f.size, 0);
  }
  return out;
}

const uploadsKeyPrefix = uploadsDir();

/** Run gc every `intervalMs` inside `serve` (never two at once); returns a stop function. */
export function scheduleGc(app: App, intervalMs: number, opts: Omit<GcOptions, 'dryRun'>, onDone: (r: GcReport) => void, onError: (e: unknown) => void): () => Promise<void> {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = runGc(app, opts).then(onDone, onError).finally(() => { running = null; });
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
