// Nonces of ollama's signed token requests, each usable once while its `ts` is acceptable
// (±5 minutes). Remembered in memory and appended (fsynced) to .ollama-registry/used-nonces
// before the token is issued, so a request captured before a restart is still a replay after it.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { fromFsError } from '../errors.js';
import type { FsDriver } from '../storage/fs.js';
import { noncesKey } from '../storage/layout.js';

const LINE_RE = /^(\d{1,15}) ([0-9a-f]{32})$/;

export class UsedNonces {
  /** sha256 (first 128 bits) of the nonce → when it may be forgotten (ms). */
  private seen = new Map<string, number>();
  private loading?: Promise<void>;
  private fh?: FileHandle;
  private writes: Promise<unknown> = Promise.resolve();
  private linesInFile = 0;

  /** `driver`: where to keep them (none: memory only). */
  constructor(private readonly windowMs: number, private readonly driver?: FsDriver, private readonly max = 200_000) {}

  /** Record a nonce; false when it was already used, here or before a restart. */
  async use(nonce: string, now = Date.now()): Promise<boolean> {
    await (this.loading ??= this.load(now));
    const h = createHash('sha256').update(nonce).digest('hex').slice(0, 32);
    const until = this.seen.get(h);
    if (until !== undefined && until > now) return false;
    if (this.seen.size >= this.max) this.prune(now);
    // A ts up to a window ahead stays acceptable until a window after that.
    const forgetAt = now + 2 * this.windowMs;
    this.seen.set(h, forgetAt);
    if (this.driver) await this.append(`${forgetAt} ${h}\n`);
    return true;
  }

  private async load(now: number): Promise<void> {
    if (!this.driver) return;
    let text = '';
    try {
      text = (await this.driver.readAll(noncesKey())).toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const line of text.split('\n')) {
      const m = LINE_RE.exec(line);
      if (m && Number(m[1]) > now) this.seen.set(m[2]!, Number(m[1]));
    }
    this.linesInFile = Infinity; // rewrite on the first append: drops what expired while stopped
  }

  private append(line: string): Promise<void> {
    const done = this.writes.then(async () => {
      try {
        if (this.linesInFile > 4 * this.seen.size + 10_000) await this.compact();
        this.fh ??= await open(this.driver!.path(noncesKey()), 'a', 0o600);
        await this.fh.write(line);
        await this.fh.datasync();
        this.linesInFile++;
      } catch (e) {
        throw fromFsError(e, 'the list of used token nonces');
      }
    });
    this.writes = done.catch(() => {});
    return done;
  }

  /** Rewrite the file with the nonces still remembered (atomic; the append handle is reopened). */
  private async compact(): Promise<void> {
    this.prune(Date.now());
    const text = [...this.seen].map(([h, t]) => `${t} ${h}\n`).join('');
    await this.fh?.close();
    this.fh = undefined;
    await this.driver!.write(noncesKey(), Buffer.from(text));
    this.linesInFile = this.seen.size;
  }

  private prune(now: number): void {
    for (const [h, t] of this.seen) if (t <= now) this.seen.delete(h);
    // Still full (a flood by a registered key): forget the oldest half; their ts are close to expiring anyway.
    if (this.seen.size >= this.max) for (const h of [...this.seen.keys()].slice(0, this.max / 2)) this.seen.delete(h);
  }
}
