// The one list of local files that code outside src/storage/ may touch with node:fs; everything
// in the store goes through App.driver. The exceptions:
//  - the scratch area (storage.scratch, App.scratch): local to one process's machine by definition,
//    for work that needs random access (pushed parts written with O_DIRECT, imports being hashed);
//    bytes reach the store once, through driver.putFile;
//  - foreign folders: `import` reads another models folder (or a tar), `export` writes one;
//  - blobs hashed in worker threads by `verify`, when the driver has local files (localFile below);
//  - the filesystem fill code (src/registry/pull-through/fill*.ts, FsDriver.path), until fills
//    stage in the scratch area on leases (branch fills).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, link, mkdir, open, rename, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Driver } from './driver.js';
import { FsDriver } from './fs.js';
import { checkToken } from './layout.js';

/** A fresh file name in one area of the scratch folder (the area is made on first use). */
export async function scratchFile(scratch: string, area: string, name = randomBytes(12).toString('hex')): Promise<string> {
  const dir = path.join(scratch, checkToken(area));
  await mkdir(dir, { recursive: true });
  return path.join(dir, checkToken(name));
}

/** The scratch file's name for one key of an area (stable, so a session can be found again). */
export function scratchPath(scratch: string, area: string, name: string): string {
  return path.join(scratch, checkToken(area), checkToken(name));
}

/** Remove a scratch file; no error when it is gone. */
export async function discard(file: string): Promise<void> {
  await unlink(file).catch(() => {});
}

/** Bring a foreign file into the scratch area: a hard link where the filesystem allows, else a copy. */
export async function linkOrCopy(from: string, to: string): Promise<'linked' | 'copied'> {
  try {
    await link(from, to);
    return 'linked';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP') throw e;
    await copyFile(from, to, constants.COPYFILE_FICLONE);
    return 'copied';
  }
}

/** The local file that holds a key's bytes, where the driver keeps them in files (for hash workers); else null. */
export function localFile(driver: Driver, key: string): string | null {
  return driver instanceof FsDriver ? driver.path(key) : null;
}

/** Bytes in total and free on the filesystem of a local folder (the scratch area). */
export async function localSpace(dir: string): Promise<{ total: number; free: number }> {
  const s = await statfs(dir);
  return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
}

/** Write a local file the all-or-nothing way: staged next to it (by `fill`), fsynced, renamed (export's foreign folders and tar files). */
export async function writeFileAtomic(final: string, fill: (part: string) => Promise<void>): Promise<void> {
  const part = `${final}.partial-${process.pid}`;
  await mkdir(path.dirname(final), { recursive: true });
  try {
    await fill(part);
    const fh = await open(part, 'r+');
    await fh.sync().finally(() => fh.close());
    await rename(part, final);
  } catch (e) {
    await unlink(part).catch(() => {});
    throw e;
  }
}
