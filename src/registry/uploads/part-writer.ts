// Writes one upload part into the session's data file, hashing it on the way.
//
// Chunks from the socket are copied into a few 4 MiB staging slots; each full slot is hashed and
// written with O_DIRECT, from memory that is page-aligned because it belongs to a
// WebAssembly.Memory. Direct writes skip the page cache: no copy into it, and no writeback work
// for the fsync before publishing, which with buffered writes cost about as much CPU as receiving
// and hashing together. The few bytes of a part that are not on 4 KiB boundaries (ollama's parts
// are 100 MB, decimal) go through an ordinary descriptor. Where O_DIRECT is refused (some file
// systems), or all aligned slots are taken by other parts, every write is an ordinary one.
import type { Hash } from 'node:crypto';
import { close, constants, open, write } from 'node:fs';
import { promisify } from 'node:util';

const SLOT = 4 << 20;
const SLOTS_PER_PART = 4;
/** Aligned slots shared by all uploads (64 MiB): four parts at a time go direct, others buffered. */
const POOL_SLOTS = 16;
const ALIGN = 4096;

const fsOpen = promisify(open);
const fsClose = promisify(close);

let pool: Buffer[] | undefined;
/** False once O_DIRECT failed on this data folder's file system (then every write is buffered). */
let directWorks = (constants.O_DIRECT ?? 0) !== 0;
let onRefused: ((e: unknown) => void) | undefined;

function refused(e: unknown): void {
  if (directWorks) onRefused?.(e);
  directWorks = false;
}

/** Called once if the file system refuses O_DIRECT (uploads then cost more CPU). */
export function onDirectIoRefused(fn: (e: unknown) => void): void {
  onRefused = fn;
}

/** Whether parts are written with O_DIRECT now; `useDirectIo(false)` turns it off (tests, diagnosis). */
export function directIo(): boolean {
  return directWorks;
}

export function useDirectIo(on: boolean): void {
  directWorks = on && (constants.O_DIRECT ?? 0) !== 0;
}

function takeAligned(): Buffer[] | undefined {
  if (!directWorks) return undefined;
  if (!pool) {
    const mem = new WebAssembly.Memory({ initial: (POOL_SLOTS * SLOT) >> 16 });
    pool = Array.from({ length: POOL_SLOTS }, (_, i) => Buffer.from(mem.buffer, i * SLOT, SLOT));
  }
  return pool.length >= SLOTS_PER_PART ? pool.splice(0, SLOTS_PER_PART) : undefined;
}

function writeAll(fd: number, buf: Buffer, at: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const next = (off: number): void => {
      write(fd, buf, off, buf.length - off, at + off, (err, n) => {
        if (err) return reject(err);
        // A short write (rare on files): the rest again.
        if (off + n < buf.length) next(off + n);
        else resolve();
      });
    };
    next(0);
  });
}

export class PartWriter {
  private slots: Buffer[];
  private readonly aligned: boolean;
  private direct: number | undefined;
  private cur = 0;
  /** File offset of byte 0 of the current slot (a multiple of ALIGN), and the slot's first and next free byte. */
  private base: number;
  private lead: number;
  private fill: number;
  private inflight = new Set<Promise<void>>();
  private failure: unknown;
  /** The write of each slot's last contents, and whether it is still going. */
  private busy: Promise<void>[];
  private pending: boolean[] = [];

  private constructor(private readonly fd: number, direct: number | undefined, slots: Buffer[] | undefined, start: number, private readonly hash: Hash) {
    this.aligned = slots !== undefined;
    this.slots = slots ?? [];
    this.direct = direct;
    this.lead = start % ALIGN;
    this.base = start - this.lead;
    this.fill = this.lead;
    this.busy = Array.from({ length: SLOTS_PER_PART }, () => Promise.resolve());
  }

  /** A writer of the part starting at byte `start` of `file` (which is at least that long). */
  static async open(file: string, start: number, hash: Hash): Promise<PartWriter> {
    const fd = await fsOpen(file, 'r+');
    const slots = takeAligned();
    let direct: number | undefined;
    if (slots) {
      direct = await fsOpen(file, constants.O_WRONLY | constants.O_DIRECT).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EINVAL') refused(e);
        return undefined;
      });
      if (direct === undefined) pool!.push(...slots);
    }
    return new PartWriter(fd, direct, direct === undefined ? undefined : slots, start, hash);
  }

  /**
   * Takes a chunk. Returns a promise only when the chunk could not be taken whole because every
   * slot is still being written (the caller pauses its source until it settles).
   */
  push(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    return this.take(chunk, 0);
  }

  private take(chunk: Buffer, from: number): Promise<void> | undefined {
    let off = from;
    while (off < chunk.length) {
      const n = chunk.copy(this.slot(this.cur), this.fill, off);
      off += n;
      this.fill += n;
      if (this.fill === SLOT) {
        this.flush();
        if (this.pending[this.cur]) {
          const rest = off;
          return this.busy[this.cur]!.then(() => {
            if (this.failure) throw this.failure;
            return this.take(chunk, rest);
          });
        }
      }
    }
    return undefined;
  }

  /** Writes what is left and waits for every write; the part is then in the file. */
  async finish(): Promise<void> {
    if (this.fill > this.lead) this.flush(true);
    await this.settle();
    if (this.failure) throw this.failure;
  }

  /** Waits for the writes in flight (before the caller truncates or gives up). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  async close(): Promise<void> {
    await this.settle();
    await fsClose(this.fd).catch(() => {});
    if (this.direct !== undefined) await fsClose(this.direct).catch(() => {});
    if (this.aligned) pool!.push(...this.slots);
    this.slots = [];
  }

  /** Hashes the current slot, starts writing it, and moves on to the next one (which may still be being written). */
  private flush(last = false): void {
    const i = this.cur;
    this.pending[i] = true;
    // One update per slot: measured cheaper than one per 64 KiB chunk.
    this.hash.update(this.slot(i).subarray(this.lead, this.fill));
    this.busy[i] = this.writeSlot(this.slot(i), this.lead, this.fill, this.base).finally(() => { this.pending[i] = false; });
    if (last) return;
    this.base += SLOT;
    this.lead = 0;
    this.fill = 0;
    this.cur = (i + 1) % SLOTS_PER_PART;
  }

  private slot(i: number): Buffer {
    // Buffered writers allocate their slots as they need them (most parts of OCI tools are small).
    return (this.slots[i] ??= Buffer.allocUnsafeSlow(SLOT));
  }

  /** Slot bytes [from, to) go to file offset base + from: aligned whole pages direct, the edges buffered. */
  private writeSlot(slot: Buffer, from: number, to: number, base: number): Promise<void> {
    const tasks: Promise<void>[] = [];
    const pageStart = Math.ceil(from / ALIGN) * ALIGN;
    const pageEnd = to - (to % ALIGN);
    if (this.direct === undefined || pageStart >= pageEnd) {
      tasks.push(writeAll(this.fd, slot.subarray(from, to), base + from));
    } else {
      if (from < pageStart) tasks.push(writeAll(this.fd, slot.subarray(from, pageStart), base + from));
      tasks.push(this.writeDirect(slot.subarray(pageStart, pageEnd), base + pageStart));
      if (pageEnd < to) tasks.push(writeAll(this.fd, slot.subarray(pageEnd, to), base + pageEnd));
    }
    const p = Promise.all(tasks).then(() => {}, (e: unknown) => { this.failure ??= e; });
    this.inflight.add(p);
    void p.then(() => this.inflight.delete(p));
    return p;
  }

  private async writeDirect(buf: Buffer, at: number): Promise<void> {
    try {
      await writeAll(this.direct!, buf, at);
    } catch (e) {
      // The file system takes O_DIRECT at open but not these writes: buffered from now on.
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      refused(e);
      await writeAll(this.fd, buf, at);
    }
  }
}
