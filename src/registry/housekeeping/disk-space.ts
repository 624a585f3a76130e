// The free-space floor (`storage.minFree`): below it, writes that bring bytes in (push sessions,
// monolithic pushes, fills, imports) are refused with 507 and /readyz says not ready, so a full
// disk never stops the registry from serving what it has, and gc, rm and manifests still work.
//
// statfs is cheap but not free: the figures are cached for a second, and streams count what they
// write against them between reads, so a fast writer cannot overshoot by much. A refusal is
// decided on fresh figures only (space freed a moment ago counts).
import { Coalesce } from '../../coalesce.js';
import { formatBytes } from '../../cli/format.js';
import type { MinFree } from '../../config.js';
import { RegistryError } from '../../errors.js';

const REFRESH_MS = 1000;

interface Space { total: number; free: number }

export class DiskSpace {
  private last?: Space & { at: number };
  private reading = new Coalesce<'space', void>();

  constructor(private readonly fs: { space(): Promise<Space> }, private readonly minFree: MinFree) {}

  /** The floor in bytes on a file system of `total` bytes (0: none). */
  floor(total: number): number {
    const bytes = this.minFree.bytes ?? Infinity;
    const share = this.minFree.percent === undefined ? Infinity : Math.ceil((total * this.minFree.percent) / 100);
    const f = Math.min(bytes, share);
    return Number.isFinite(f) ? f : 0;
  }

  /** Read the file system's figures again when they are older than a second (or now, with `force`). */
  refresh(force = false): Promise<void> {
    if (!force && this.last && Date.now() - this.last.at < REFRESH_MS) return Promise.resolve();
    return this.reading.run('space', () => this.fs.space().then(
      (s) => { this.last = { ...s, at: Date.now() }; },
      () => { /* no figures: writes meet the disk's own ENOSPC instead */ },
    ));
  }

  /** Why a write of `bytes` more would be refused, or null. */
  private refusal(what: string, bytes: number): RegistryError | null {
    if (!this.last) return null;
    const floor = this.floor(this.last.total);
    if (this.last.free - bytes >= floor) return null;
    const need = bytes > 0 ? `${formatBytes(bytes)} for ${what}` : what;
    return new RegistryError('INSUFFICIENT_STORAGE',
      `the registry's disk has ${formatBytes(Math.max(0, this.last.free))} free and keeps ${formatBytes(floor)} free (storage.minFree): no room for ${need}; try again after space was freed`);
  }

  /** Refuse (507) a write of `bytes` more when it would leave less than the floor. */
  async check(what: string, bytes = 0): Promise<void> {
    await this.refresh();
    if (this.refusal(what, bytes)) await this.refresh(true);
    const e = this.refusal(what, bytes);
    if (e) throw e;
  }

  /** A stream is about to write `bytes`: refuse (507) below the floor, else count them as used. */
  async take(what: string, bytes: number): Promise<void> {
    await this.check(what, bytes);
    if (this.last) this.last.free -= bytes;
  }

  /** For /readyz: 'ok', or why writes are refused now. */
  async status(): Promise<string> {
    await this.refresh(true);
    if (!this.last) return 'ok';
    const floor = this.floor(this.last.total);
    return this.last.free >= floor ? 'ok' : `${formatBytes(this.last.free)} free, below storage.minFree (${formatBytes(floor)}): pushes and fills are refused`;
  }
}
