// A small disk for full-disk tests: a tmpfs mounted by the test (the suite runs as root). Where
// it cannot be mounted the test skips with the reason, and fails under CI=true, where the
// suite must prove what it is about.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { skipOrFail } from './ci.js';
import { tempDir } from './server.js';

const run = promisify(execFile);

export interface Tmpfs {
  /** The mounted folder, or '' when mounting failed. */
  dir: string;
  /** Why it could not be mounted. */
  why: string;
  unmount(): Promise<void>;
}

export async function mountTmpfs(size: string): Promise<Tmpfs> {
  const dir = await tempDir('oreg-tmpfs-');
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  } catch (e) {
    const why = `cannot mount a tmpfs (${(e as Error).message.split('\n')[0]}): full-disk tests need root or CAP_SYS_ADMIN`;
    return { dir: '', why, unmount: async () => {} };
  }
  return { dir, why: '', unmount: async () => { await run('umount', [dir]).catch(() => run('umount', ['-l', dir])); } };
}

/** The mounted folder; without one, a skip (or a failure under CI=true). */
export function needTmpfs(t: TestContext, fs: Tmpfs): string | null {
  if (fs.dir) return fs.dir;
  skipOrFail(t, fs.why);
  return null;
}
