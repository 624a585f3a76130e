// Following a fill that another process runs on the same data folder (`ollama-registry pull`
// while `serve` runs, or the reverse). Its bytes are served as its state.json says they are on
// disk (that file is written after a datasync), the published blob once it lands; and when the
// other process goes away without publishing (its lock file says so), this process takes the
// fill over, resuming from the same state, and the readers carry on with it.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { RegistryError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { lockHolder, type FsDriver } from '../../storage/fs.js';
import { fillKey } from '../../storage/layout.js';
import type { BlobStore } from '../blobs/blobs.js';
import type { Fill, FillState } from './fill.js';
import { copyFill, type ReadableFill } from './fill-reader.js';
import { IntervalSet } from './intervals.js';

const POLL_MS = 250;

export async function readFillState(driver: FsDriver, digest: string): Promise<FillState | null> {
  try {
    const s = JSON.parse(await readFile(driver.path(fillKey(digest, 'state.json')), 'utf8')) as FillState;
    const ok = s.version === 1 && s.digest === digest && Number.isSafeInteger(s.size) && s.size >= 0 && Array.isArray(s.have) &&
      s.have.every((r) => Array.isArray(r) && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0]! >= 0 && r[0]! <= r[1]! && r[1]! <= s.size);
    return ok ? s : null;
  } catch {
    return null;
  }
}

/** The live process (not this one) holding a fill's lock, or null. */
export async function lockOwner(driver: FsDriver, digest: string): Promise<number | null> {
  const pid = lockHolder(await readFile(driver.path(fillKey(digest, 'lock')), 'utf8').catch(() => ''));
  return pid !== null && pid !== process.pid ? pid : null;
}

/** Every byte of `b` is in `a`. */
function covers(a: IntervalSet, b: IntervalSet): boolean {
  return b.toJSON().every(([s, e]) => a.runEnd(s) >= e);
}

export interface FollowDeps { driver: FsDriver; blobs: BlobStore; log: Logger }

export class FollowedFill implements ReadableFill {
  readonly settled: Promise<void>;
  readonly closed: Promise<void>;
  private settle!: () => void;
  private close!: () => void;
  private err?: Error;
  private published = false;
  private have = new IntervalSet();
  private local?: Fill;
  private fh?: FileHandle;
  private readers = 0;
  private waiters: Array<() => void> = [];
  private polling = false;
  private lanes = 0;
  private timer: NodeJS.Timeout;

  constructor(readonly digest: string, readonly size: number, readonly owner: number, private readonly deps: FollowDeps,
    private readonly takeOver: () => Promise<Fill | FollowedFill | null>) {
    this.settled = new Promise((r) => (this.settle = r));
    this.closed = new Promise((r) => (this.close = r));
    // Not unref'd: a `pull` waiting on this must stay alive.
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    void this.poll();
  }

  get error(): Error | undefined {
    return this.local ? this.local.error : this.err;
  }

  get verified(): boolean {
    return this.local ? this.local.verified : this.published;
  }

  /** Bytes this process received from upstreams for this blob (after a take-over). */
  get received(): number {
    return this.local?.received ?? 0;
  }

  filled(): number {
    return this.local ? this.local.filled() : this.published ? this.size : this.have.total();
  }

  parallel(n: number): void {
    this.lanes = n;
    this.local?.parallel(n);
  }

  copyTo(out: Writable, start: number, end: number): Promise<void> {
    return copyFill(this, this.deps.blobs, out, start, end);
  }

  readableEnd(pos: number): number {
    if (this.local) return this.local.readableEnd(pos);
    return this.fh ? this.have.runEnd(pos) : pos;
  }

  memory(pos: number, end: number, max: number): Buffer[] {
    return this.local ? this.local.memory(pos, end, max) : [];
  }

  async readAt(buf: Buffer, len: number, pos: number): Promise<number> {
    if (this.local) return this.local.readAt(buf, len, pos);
    return (await this.fh!.read(buf, 0, len, pos)).bytesRead;
  }

  want(pos: number): void {
    this.local?.want(pos); // the other process decides what it fetches
  }

  changed(): Promise<void> {
    if (this.local) return this.local.changed();
    return new Promise((r) => this.waiters.push(r));
  }

  acquire(): void {
    if (this.local) this.local.acquire();
    else this.readers++;
  }

  release(): void {
    if (this.local) return this.local.release();
    this.readers--;
    this.maybeCloseFile();
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  private async poll(): Promise<void> {
    if (this.polling || this.err || this.published || this.local) return;
    this.polling = true;
    try {
      if ((await this.deps.blobs.size(this.digest)) !== null) return this.finish();
      const st = await readFillState(this.deps.driver, this.digest);
      if (st && st.size === this.size) {
        const next = new IntervalSet(st.have);
        if (!covers(next, this.have)) throw new RegistryError('UNAVAILABLE', `the other ollama-registry process filling blob ${this.digest} started it over; pull again`);
        const opened = !this.fh;
        this.fh ??= await open(this.deps.driver.path(fillKey(this.digest, 'data')), 'r').catch(() => undefined);
        if (next.total() !== this.have.total() || (opened && this.fh)) {
          this.have = next;
          this.notify();
        }
      }
      if ((await lockOwner(this.deps.driver, this.digest)) !== null) return;
      // The owner is gone without publishing (crashed, failed, or discarded bad bytes): the
      // blob may have landed just before its lock went; else this process carries on.
      if ((await this.deps.blobs.size(this.digest)) !== null) return this.finish();
      await this.takeOverNow();
    } catch (e) {
      this.fail(e as Error);
    } finally {
      this.polling = false;
    }
  }

  private async takeOverNow(): Promise<void> {
    clearInterval(this.timer);
    const f = await this.takeOver();
    if (f === null) return this.finish();
    if (f instanceof FollowedFill || !covers(f.have, this.have)) {
      // Our readers got bytes that the new fill does not vouch for.
      throw new RegistryError('UNAVAILABLE', `the other ollama-registry process filling blob ${this.digest} stopped and its partial data could not be reused; pull again`);
    }
    this.deps.log.info({ digest: this.digest, owner: this.owner, filled: f.filled() }, 'took over a fill that another process left');
    this.local = f;
    for (let i = 0; i < this.readers; i++) f.acquire();
    this.readers = 0;
    if (this.lanes) f.parallel(this.lanes);
    this.maybeCloseFile();
    void f.settled.then(() => this.settle());
    void f.closed.then(() => this.close());
    this.notify();
  }

  private finish(): void {
    this.published = true;
    clearInterval(this.timer);
    this.settle();
    this.close();
    this.notify();
    this.maybeCloseFile();
  }

  /** Stop following with an error (shutdown, or the other process's data became unusable). */
  fail(err: Error): void {
    if (this.local) return this.local.fail(err);
    if (this.err || this.published) return;
    this.err = err;
    clearInterval(this.timer);
    this.settle();
    this.close();
    this.notify();
    this.maybeCloseFile();
  }

  private maybeCloseFile(): void {
    if (this.readers > 0 || !this.fh || !(this.err || this.published || this.local)) return;
    const fh = this.fh;
    this.fh = undefined;
    void fh.close().catch(() => {});
  }
}
