// Where push sessions are kept: a record per session in the store (.ollama-registry/uploads/<id>/info.json)
// and its bytes in the receiving process's scratch folder (<scratch>/uploads/<id>).
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../log.js';
import type { Driver } from '../../storage/driver.js';
import { uploadInfoKey, uploadsDir } from '../../storage/layout.js';
import { scratchPath } from '../../storage/local.js';
import type { SessionInfo } from './uploads.js';
import { IO_CHUNK } from '../../units.js';

/** The Range header distribution sends for an upload of `size` bytes. */
export function uploadRange(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

export const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Sessions with a record in the store, with the record's time (its last sign of life). */
export async function sessionRecords(driver: Driver): Promise<Array<{ id: string; mtimeMs: number }>> {
  const out: Array<{ id: string; mtimeMs: number }> = [];
  for await (const e of driver.entries(uploadsDir())) {
    const [id, file, ...rest] = e.key.slice(uploadsDir().length + 1).split('/');
    if (ID_RE.test(id ?? '') && file === 'info.json' && rest.length === 0) out.push({ id: id!, mtimeMs: e.mtimeMs });
  }
  return out;
}

/** A session's record, or null when it is gone or does not parse. */
export async function readSession(driver: Driver, id: string): Promise<SessionInfo | null> {
  try {
    return JSON.parse((await driver.readAll(uploadInfoKey(id))).toString('utf8')) as SessionInfo;
  } catch {
    return null;
  }
}

/** Sessions whose bytes are in this scratch folder's area. */
export async function localSessions(scratch: string, area: string): Promise<string[]> {
  return (await readdir(path.join(scratch, area)).catch(() => [] as string[])).filter((n) => ID_RE.test(n));
}

/** Bytes of the sessions in this scratch folder's area. */
export async function localSessionBytes(scratch: string, area: string): Promise<number> {
  let n = 0;
  for (const id of await localSessions(scratch, area)) n += (await stat(scratchPath(scratch, area, id)).catch(() => null))?.size ?? 0;
  return n;
}

/** sha256 state of a file's first `bytes` bytes. */
export async function hashPrefix(file: string, bytes: number): Promise<Hash> {
  const h = createHash('sha256');
  if (bytes > 0) {
    for await (const c of createReadStream(file, { start: 0, end: bytes - 1, highWaterMark: IO_CHUNK })) h.update(c as Buffer);
  }
  return h;
}

/** Committed sessions still kept (their commit markers), with when each was committed. */
export async function committedSessions(driver: Driver): Promise<Array<SessionInfo & { committed: string; atMs: number }>> {
  const out: Array<SessionInfo & { committed: string; atMs: number }> = [];
  for (const { id, mtimeMs } of await sessionRecords(driver)) {
    const info = await readSession(driver, id); // null: gone meanwhile, or not ours to read: no grant
    if (typeof info?.committed === 'string') out.push({ ...info, committed: info.committed, atMs: mtimeMs });
  }
  return out;
}

/** Purge stale sessions now and then periodically; returns the function that stops it. */
export function startSweeper(uploads: { purge(maxAgeMs: number): Promise<unknown[]> }, log: Logger, maxAgeMs: number): () => void {
  const sweep = () => {
    uploads.purge(maxAgeMs).then(
      (r) => { if (r.length > 0) log.info({ removed: r.length, maxAgeHours: maxAgeMs / 3600_000 }, 'removed stale upload sessions'); },
      (e) => log.warn({ err: e }, 'could not purge stale upload sessions'),
    );
  };
  sweep();
  const timer = setInterval(sweep, Math.min(3600_000, Math.max(1000, maxAgeMs / 4)));
  timer.unref();
  return () => clearInterval(timer);
}
