// Where a fill stages its bytes: the local scratch folder (storage.scratch), never the store.
//
//   <scratch>/fills/sha256-<hex>/data        sparse staging file, bytes at their offsets
//   <scratch>/fills/sha256-<hex>/state.json  which intervals are on disk (written after a datasync)
//
// Who may write there is decided by the fill's lease in the store (fills.ts), not by a lock
// file: a process on the same machine reads these files while it follows the owner, and takes
// them over (resuming from state.json) when the owner's lease expires. Only the verified blob
// reaches the store, once, through publishBlob.
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../log.js';
import { digestHex } from '../../names.js';
import type { Driver } from '../../storage/driver.js';
import { writeFileAtomic } from '../../storage/local.js';
import { blobKey, fillLeaseKey } from '../../storage/layout.js';
import { leaseHolder } from '../../storage/lease.js';

export interface FillState { version: 1; digest: string; size: number; namespace: string; model: string; upstream: string; have: Array<[number, number]> }

export type ScratchFile = 'data' | 'state.json';

export function fillsScratchDir(scratch: string): string {
  return path.join(scratch, 'fills');
}

export function fillScratchDir(scratch: string, digest: string): string {
  return path.join(fillsScratchDir(scratch), `sha256-${digestHex(digest)}`);
}

export function fillScratchFile(scratch: string, digest: string, file: ScratchFile): string {
  return path.join(fillScratchDir(scratch, digest), file);
}

/** The digests that have a staging folder in this scratch folder. */
export async function scratchFills(scratch: string): Promise<string[]> {
  const names = await readdir(fillsScratchDir(scratch)).catch(() => [] as string[]);
  return names.flatMap((n) => {
    const m = /^sha256-([0-9a-f]{64})$/.exec(n);
    return m ? [`sha256:${m[1]}`] : [];
  });
}

/** A fill's recorded progress, or null when absent or not a state of this digest. */
export async function readFillState(scratch: string, digest: string): Promise<FillState | null> {
  try {
    const s = JSON.parse(await readFile(fillScratchFile(scratch, digest, 'state.json'), 'utf8')) as FillState;
    return validState(s, digest) ? s : null;
  } catch {
    return null;
  }
}

/** A state (from a file or from a peer) names this digest and only intervals inside the blob. */
export function validState(s: Partial<FillState> | null, digest: string): s is FillState {
  return !!s && s.version === 1 && s.digest === digest && Number.isSafeInteger(s.size) && s.size! >= 0 && Array.isArray(s.have) && s.have.length <= 100_000 &&
    s.have.every((r) => Array.isArray(r) && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0]! >= 0 && r[0]! <= r[1]! && r[1]! <= s.size!);
}

/** Replace the state file atomically. */
export async function writeFillState(scratch: string, state: FillState): Promise<void> {
  await writeFileAtomic(fillScratchFile(scratch, state.digest, 'state.json'), (part) => writeFile(part, JSON.stringify(state)));
}

export async function makeFillScratch(scratch: string, digest: string): Promise<void> {
  await mkdir(fillScratchDir(scratch, digest), { recursive: true });
}

/** Remove a fill's staging folder (or only its state, keeping nothing a later resume could trust). */
export async function removeFillScratch(scratch: string, digest: string): Promise<void> {
  await rm(fillScratchDir(scratch, digest), { recursive: true, force: true });
}

/**
 * The verified staging file becomes the blob: the store's one way in for a local file (a rename
 * on the same file system). The only place a fill publishes.
 */
export async function publishBlob(driver: Driver, scratch: string, digest: string): Promise<'moved' | 'copied'> {
  return (await driver.putFile(fillScratchFile(scratch, digest, 'data'), blobKey(digest))).how;
}

/**
 * At start-up, before this process fills anything: staging folders that nobody holds a lease on
 * and that recorded no progress (a process killed before its first state) can never be resumed,
 * so their bytes go. Folders with a state stay for `pending` to resume.
 */
export async function discardOrphanFills(driver: Driver, scratch: string, log: Logger): Promise<number> {
  let n = 0;
  for (const digest of await scratchFills(scratch)) {
    if ((await readFillState(scratch, digest)) || (await leaseHolder(driver, fillLeaseKey(digest))) !== null) continue;
    await removeFillScratch(scratch, digest);
    n++;
  }
  if (n > 0) log.info({ fills: n }, 'removed fills a stopped process left without any record of their progress');
  return n;
}

/**
 * Staging folders with no live lease that sat idle (gc): a fill nobody resumed, after `staleMs`;
 * one without a state (nobody can resume it), after `graceMs`.
 */
export async function sweepFills(driver: Driver, scratch: string, now: number, ms: { graceMs: number; staleMs: number }, dry: boolean): Promise<{ removed: string[]; bytes: number }> {
  const out = { removed: [] as string[], bytes: 0 };
  for (const digest of await scratchFills(scratch)) {
    if ((await leaseHolder(driver, fillLeaseKey(digest), now)) !== null) continue;
    const [data, state] = await Promise.all((['data', 'state.json'] as const).map((f) => stat(fillScratchFile(scratch, digest, f)).catch(() => null)));
    const files = [data, state].filter((s) => !!s);
    const newest = Math.max(0, ...files.map((s) => s.mtimeMs));
    if (now - newest < (state ? Math.max(ms.staleMs, ms.graceMs) : ms.graceMs)) continue;
    if (!dry) await removeFillScratch(scratch, digest);
    out.removed.push(fillScratchDir(scratch, digest));
    out.bytes += files.reduce((a, s) => a + s.size, 0);
  }
  return out;
}
