// The filesystem driver's pending writes and conditional writes. A version is the sha256 of the
// record's bytes; a replace or delete holds a guard file (created with O_EXCL) while it compares
// and swaps, so two processes on one data folder cannot both win.
import { createHash } from 'node:crypto';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { fromFsError } from '../errors.js';
import type { PendingWrite, Versioned } from './driver.js';
import { IO_CHUNK } from '../units.js';

const GUARD_STALE_MS = 10_000; // a guard is held for a few ms; one this old belongs to a dead writer
const GUARD_WAIT_MS = 15_000; // longer than the above, so a waiter outlives a dead writer's guard
const GUARD_OWNER = `${hostname()} ${process.pid}`;

export interface FsPaths {
  /** Key → absolute path, refusing keys that leave the root. */
  path(key: string): string;
  /** A fresh staging file's path on the same filesystem. */
  staging(): string;
  /** The guard file's path for one key. */
  guard(key: string): string;
  /** Rename a staged file onto a key, making its folders (and sealing it). */
  place(tmp: string, key: string): Promise<void>;
  /** Give a staged file the mode and owner its key needs (the registry's state is private). */
  seal(tmp: string, key: string): Promise<void>;
}

export function versionOf(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex').slice(0, 32);
}

export async function createPending(p: FsPaths, key: string): Promise<PendingWrite> {
  p.path(key);
  const tmp = p.staging();
  await mkdir(path.dirname(tmp), { recursive: true });
  const fh = await open(tmp, 'wx', 0o644);
  const stream = fh.createWriteStream({ highWaterMark: IO_CHUNK });
  let done = false;
  return {
    stream,
    async commit() {
      if (done) throw new Error(`fs driver: ${key} was already committed or cancelled`);
      done = true;
      try {
        if (!stream.writableEnded) stream.end();
        await finished(stream);
        const again = await open(tmp, 'r+');
        await again.sync().finally(() => again.close());
        await p.place(tmp, key);
        return { size: stream.bytesWritten };
      } catch (e) {
        await unlink(tmp).catch(() => {});
        throw fromFsError(e, key);
      }
    },
    async cancel() {
      if (done) return;
      done = true;
      stream.destroy();
      await finished(stream).catch(() => {});
      await unlink(tmp).catch(() => {});
    },
  };
}

export async function readVersioned(p: FsPaths, key: string): Promise<Versioned | null> {
  try {
    const body = await readFile(p.path(key));
    return { body, version: versionOf(body) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Write `body` to a synced staging file and hand its path to `place`; the staging file never stays. */
async function staged<T>(p: FsPaths, key: string, body: Buffer, place: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = p.staging();
  await mkdir(path.dirname(tmp), { recursive: true });
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await mkdir(path.dirname(p.path(key)), { recursive: true });
    return await place(tmp);
  } catch (e) {
    throw fromFsError(e, key);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

export function createIfAbsent(p: FsPaths, key: string, body: Buffer): Promise<string | null> {
  // link() fails with EEXIST when the target exists: the check and the write are one step.
  return staged(p, key, body, async (tmp) => {
    try {
      await p.seal(tmp, key);
      await link(tmp, p.path(key));
      return versionOf(body);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null;
      throw e;
    }
  });
}

export async function replaceIf(p: FsPaths, key: string, body: Buffer, version: string): Promise<string | null> {
  return withGuard(p, key, async () => {
    const now = await readVersioned(p, key);
    if (!now || now.version !== version) return null;
    return staged(p, key, body, async (tmp) => {
      await p.place(tmp, key);
      return versionOf(body);
    });
  });
}

export async function deleteIf(p: FsPaths, key: string, version: string): Promise<boolean> {
  return withGuard(p, key, async () => {
    const now = await readVersioned(p, key);
    if (!now || now.version !== version) return false;
    await unlink(p.path(key));
    return true;
  });
}

/** Whether a guard belongs to a writer that is gone: a process of this host that no longer runs, or a guard too old. */
async function deadGuard(guard: string): Promise<boolean> {
  const [st, owner] = await Promise.all([stat(guard).catch(() => null), readFile(guard, 'utf8').catch(() => '')]);
  if (!st) return false;
  if (Date.now() - st.mtimeMs > GUARD_STALE_MS) return true;
  // A writer killed (kill -9) while it held a guard must not block this key for GUARD_STALE_MS.
  const [host, pid] = owner.split(' ');
  if (host !== hostname() || !/^\d+$/.test(pid ?? '') || Number(pid) === process.pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function withGuard<T>(p: FsPaths, key: string, fn: () => Promise<T>): Promise<T> {
  const guard = p.guard(key);
  await mkdir(path.dirname(guard), { recursive: true });
  const deadline = Date.now() + GUARD_WAIT_MS;
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    try {
      const fh = await open(guard, 'wx', 0o600);
      await fh.writeFile(GUARD_OWNER).finally(() => fh.close());
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (await deadGuard(guard)) await unlink(guard).catch(() => {});
      if (Date.now() > deadline) throw new Error(`fs driver: ${key} stayed locked by another writer for ${GUARD_WAIT_MS / 1000} s`, { cause: e });
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(guard).catch(() => {});
  }
}
