// Filesystem driver: keys are paths under the data folder. Atomic writes go to a staging file
// under .ollama-registry/tmp on the same filesystem, are fsynced, then renamed into place.
import { constants, createReadStream, mkdirSync, statSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, open, readdir, readFile, rename, rmdir, stat, statfs, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromFsError } from '../errors.js';
import type { ByteRange, Driver, Entry, PendingWrite, Stat, Versioned } from './driver.js';
import * as records from './fs-records.js';
import { casGuardKey, STATE, stagingKey, tmpDir } from './layout.js';
import { IO_CHUNK } from '../units.js';


export class FsDriver implements Driver {
  readonly root: string;
  readonly description: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.description = `folder ${this.root}`;
  }

  /** Key → absolute path; refuses anything that could leave the root. */
  path(key: string): string {
    const parts = key.split('/');
    for (const p of parts) {
      if (p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0')) {
        throw new Error(`fs driver: refusing storage key ${JSON.stringify(key)}`);
      }
    }
    return path.join(this.root, ...parts);
  }

  private readonly paths: records.FsPaths = {
    path: (key) => this.path(key),
    staging: () => this.path(stagingKey()),
    guard: (key) => this.path(casGuardKey(key)),
    place: (tmp, key) => this.place(tmp, key),
    seal: (tmp, key) => this.seal(tmp, key),
  };

  /**
   * The registry's own state (keys, users, secrets) is private: 0600. When root edits it (sudo
   * ollama-registry keys add …), it goes to the data folder's owner, so the server can still read it.
   */
  private async seal(file: string, key: string): Promise<void> {
    if (!key.startsWith(`${STATE}/`)) return;
    await chmod(file, 0o600);
    if (process.getuid?.() !== 0) return;
    const st = await stat(this.path(STATE));
    if (st.uid !== 0) await chown(file, st.uid, st.gid);
  }

  /** Rename a staged file onto `key`, making its folders; once more if a delete pruned them meanwhile. */
  private async place(tmp: string, key: string): Promise<void> {
    const target = this.path(key);
    await this.seal(tmp, key);
    for (let attempt = 0; ; attempt++) {
      await mkdir(path.dirname(target), { recursive: true });
      try {
        return await rename(tmp, target);
      } catch (e) {
        if (!isMissing(e) || attempt > 0) throw e;
      }
    }
  }

  /** Remove the now-empty folders above a deleted key (the store has no folders), up to the areas' own. */
  private async prune(key: string): Promise<void> {
    const parts = key.split('/');
    const keep = parts[0] === STATE ? 2 : 1; // blobs/, manifests/, .ollama-registry/<area>/ stay
    for (let n = parts.length - 1; n > keep; n--) {
      try {
        await rmdir(this.path(parts.slice(0, n).join('/')));
      } catch {
        return; // not empty (or already gone): nothing above can be empty either
      }
    }
  }

  async stat(key: string): Promise<Stat | null> {
    try {
      const s = await stat(this.path(key));
      return s.isDirectory() ? null : { size: s.size, mtimeMs: s.mtimeMs };
    } catch (e) {
      if (isMissing(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const fh = await open(this.path(key), 'r');
    return fh.createReadStream({ highWaterMark: IO_CHUNK, start: range?.start, end: range?.end });
  }

  /**
   * Copy a file (or one byte range of it) into `out` and end it, through one reused 256 KiB buffer: read, write, wait
   * for the write to reach the kernel, read again. The socket's own send buffer keeps the wire busy while the next read
   * runs, so a second buffer bought nothing in CPU per GiB (measured with 16 parallel ranges, bench/core.ts: less, and
   * 256 KiB no more than 512 KiB) and cost memory: one small buffer per download is what keeps 32 concurrent pulls small.
   */
  async copyTo(key: string, out: Writable, range?: ByteRange): Promise<void> {
    const fh = await open(this.path(key), 'r');
    // A write's callback may never come once the client is gone: stop on 'close' as well.
    let onClose!: () => void;
    const gone = new Promise<never>((_, reject) => {
      onClose = () => reject(Object.assign(new Error('client went away'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
      if (out.destroyed) onClose();
      else out.once('close', onClose);
    });
    gone.catch(() => {});
    try {
      let pos = range?.start ?? 0;
      const end = range?.end ?? (await fh.stat()).size - 1;
      const buf = Buffer.allocUnsafeSlow(Math.min(256 << 10, end - pos + 1));
      while (pos <= end) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos + 1), pos);
        if (bytesRead === 0) throw new Error(`fs driver: ${key} shrank while it was being read`);
        pos += bytesRead;
        const written = new Promise<void>((resolve, reject) => {
          out.write(buf.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve()));
        });
        written.catch(() => {}); // the race below may settle on `gone` first
        await Promise.race([written, gone]); // the buffer is free again once this write reached the kernel
      }
      out.end(); // at once, like pipeline(): the last writes need not be flushed first
    } finally {
      out.off('close', onClose);
      await fh.close();
    }
  }

  readAll(key: string): Promise<Buffer> {
    return readFile(this.path(key));
  }

  async write(key: string, body: Readable | Buffer): Promise<{ size: number }> {
    this.path(key);
    const tmp = this.path(stagingKey());
    await mkdir(path.dirname(tmp), { recursive: true });
    let size: number;
    try {
      const fh = await open(tmp, 'wx', 0o644);
      if (Buffer.isBuffer(body)) {
        try {
          await fh.writeFile(body);
          size = body.length;
          await fh.sync();
        } finally {
          await fh.close();
        }
      } else {
        // The stream closes the handle when done (a FileHandle stream that does not close
        // keeps fh.close() waiting forever), so fsync through a second handle.
        const out = fh.createWriteStream({ highWaterMark: IO_CHUNK });
        await pipeline(body, out);
        size = out.bytesWritten;
        const again = await open(tmp, 'r+');
        await again.sync().finally(() => again.close());
      }
      await this.place(tmp, key);
      return { size };
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw fromFsError(e, key);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'EPERM') return this.prune(`${key}/-`); // a folder is no object: it goes only when empty
      if (code !== 'ENOTDIR' && !isMissing(e)) throw e;
    }
    await this.prune(key);
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return (await readdir(this.path(prefix))).sort();
    } catch (e) {
      if (isMissing(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw e;
    }
  }

  async putFile(localPath: string, key: string): Promise<{ how: 'moved' | 'copied' }> {
    this.path(key);
    // The store's time is when the key got its bytes (gc's grace period), even for a linked import.
    const now = new Date();
    await utimes(localPath, now, now).catch((e) => { throw fromFsError(e, key); });
    // The scratch area is on this filesystem by default: a rename, no copy. The writer fsynced it.
    try {
      await this.place(localPath, key);
      return { how: 'moved' };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw fromFsError(e, key);
    }
    const tmp = this.path(stagingKey());
    await mkdir(path.dirname(tmp), { recursive: true });
    try {
      await copyFile(localPath, tmp, constants.COPYFILE_FICLONE);
      const fh = await open(tmp, 'r+');
      await fh.sync().finally(() => fh.close());
      await this.place(tmp, key);
      await unlink(localPath).catch(() => {});
      return { how: 'copied' };
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw fromFsError(e, key);
    }
  }

  create(key: string): Promise<PendingWrite> {
    return records.createPending(this.paths, key);
  }

  async *entries(prefix: string): AsyncIterable<Entry> {
    const base = prefix === '' ? this.root : this.path(prefix);
    let names: string[];
    try {
      names = (await readdir(base, { recursive: true })).map(String).sort();
    } catch (e) {
      if (isMissing(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw e;
    }
    for (const name of names) {
      const key = (prefix === '' ? name : `${prefix}/${name}`).split(path.sep).join('/');
      const st = await this.stat(key);
      if (st) yield { key, size: st.size, mtimeMs: st.mtimeMs };
    }
  }

  readVersioned(key: string): Promise<Versioned | null> {
    return records.readVersioned(this.paths, key);
  }

  createIfAbsent(key: string, body: Buffer): Promise<string | null> {
    return records.createIfAbsent(this.paths, key, body);
  }

  replaceIf(key: string, body: Buffer, version: string): Promise<string | null> {
    return records.replaceIf(this.paths, key, body, version);
  }

  deleteIf(key: string, version: string): Promise<boolean> {
    return records.deleteIf(this.paths, key, version);
  }

  async space(): Promise<{ total: number; free: number }> {
    const s = await statfs(this.root);
    return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
  }

  /**
   * Staging files of writers that stopped (killed mid-write): the pid in a staging file's name is
   * this machine's (the staging folder is on this filesystem), so a stopped writer is known.
   */
  async sweep(opts: { graceMs: number; staleMs: number; dryRun?: boolean }): Promise<{ removed: string[]; bytes: number }> {
    const out = { removed: [] as string[], bytes: 0 };
    const now = Date.now();
    for (const name of await this.list(tmpDir())) {
      const pid = Number(name.split('-')[0]);
      const key = `${tmpDir()}/${name}`;
      const st = await this.stat(key).catch(() => null);
      if (!st) continue;
      const age = now - st.mtimeMs;
      if ((!alive(pid) && age >= opts.graceMs) || (pid !== process.pid && age > opts.staleMs)) {
        if (!opts.dryRun) await unlink(this.path(key)).catch(() => {});
        out.removed.push(key);
        out.bytes += st.size;
      }
    }
    return out;
  }
}

/** Is a process with this id running (on this machine's pid namespace)? */
export function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * `mkdir -p` that fails instead of spinning: Node's recursive mkdir loops forever where a parent
 * exists but refuses to hold the child with ENOENT (e.g. --data /proc/x). Synchronous: it runs
 * when a command opens its data folder or a key file, not per request.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let p = path.resolve(dir); ; p = path.dirname(p)) {
    const st = statSync(p, { throwIfNoEntry: false });
    if (st) {
      if (!st.isDirectory()) throw Object.assign(new Error(`cannot create folder ${dir}: ${p} is not a folder`), { code: 'ENOTDIR' });
      break;
    }
    missing.unshift(p);
    if (path.dirname(p) === p) break;
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EEXIST') continue;
      throw Object.assign(new Error(`cannot create folder ${d}: ${err.code ?? err.message}${err.code === 'ENOENT' ? ' (its parent does not accept new folders)' : ''}`), { code: err.code });
    }
  }
}

export function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

export function fileStream(p: string): Readable {
  return createReadStream(p, { highWaterMark: IO_CHUNK });
}

