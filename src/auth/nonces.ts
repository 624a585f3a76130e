// Nonces of ollama's signed token requests, each usable once while its `ts` is acceptable
// (±5 minutes). A nonce is taken with a conditional write of its own record,
// .ollama-registry/nonces/<sha256>, before the token is issued: one winner among every process and
// replica on the store, with no window in which a replay on another replica goes unseen, and a
// request captured before a restart is still a replay after it. Nothing is read, merged and
// rewritten: records are only created, and removed once expired (their time says when).
// A memory map answers repeats in this process without a store request.
import { createHash } from 'node:crypto';
import { Coalesce } from '../coalesce.js';
import { fromFsError } from '../errors.js';
import type { Driver } from '../storage/driver.js';
import { noncesKey, usedNonceDir, usedNonceKey } from '../storage/layout.js';

const LINE_RE = /^(\d{1,15}) ([0-9a-f]{32})$/;
/** Expired records are removed every this many uses (one listing), and at start. */
const SWEEP_EVERY = 1000;

export class UsedNonces {
  /** sha256 (first 128 bits) of the nonce → when it may be forgotten (ms). */
  private seen = new Map<string, number>();
  private loading?: Promise<void>;
  private uses = 0;
  private sweeping = new Coalesce<'sweep', void>();

  /** `driver`: where to keep them (none: memory only). */
  constructor(private readonly windowMs: number, private readonly driver?: Driver, private readonly max = 200_000) {}

  /** Record a nonce; false when it was already used, here, on another replica, or before a restart. */
  async use(nonce: string, now = Date.now()): Promise<boolean> {
    await (this.loading ??= this.migrate(now));
    const h = createHash('sha256').update(nonce).digest('hex').slice(0, 32);
    const until = this.seen.get(h);
    if (until !== undefined && until > now) return false;
    if (this.seen.size >= this.max) this.prune(now);
    // A ts up to a window ahead stays acceptable until a window after that.
    const forgetAt = now + 2 * this.windowMs;
    if (this.driver && !(await this.take(h, forgetAt, now))) return false;
    this.seen.set(h, forgetAt);
    if (this.driver && ++this.uses % SWEEP_EVERY === 0) this.sweepSoon(now);
    return true;
  }

  /** Create the nonce's record; an existing one that expired is taken over, a live one is a replay. */
  private async take(h: string, forgetAt: number, now: number): Promise<boolean> {
    const d = this.driver!;
    const body = Buffer.from(String(forgetAt));
    try {
      if (await d.createIfAbsent(usedNonceKey(h), body)) return true;
      const cur = await d.readVersioned(usedNonceKey(h));
      if (!cur) return (await d.createIfAbsent(usedNonceKey(h), body)) !== null;
      const until = Number(cur.body.toString('utf8'));
      if (Number.isFinite(until) && until > now) return false;
      return (await d.replaceIf(usedNonceKey(h), body, cur.version)) !== null;
    } catch (e) {
      throw fromFsError(e, 'the list of used token nonces');
    }
  }

  /** Older versions kept one file of lines: bring its live nonces over once, then remove it. */
  private async migrate(now: number): Promise<void> {
    if (!this.driver) return;
    const old = await this.driver.readAll(noncesKey()).catch(() => null);
    if (old) {
      for (const line of old.toString('utf8').split('\n')) {
        const m = LINE_RE.exec(line);
        if (m && Number(m[1]) > now) await this.take(m[2]!, Number(m[1]), now);
      }
      await this.driver.delete(noncesKey());
    }
    this.sweepSoon(now);
  }

  /** Remove expired records (by their time: a record is written when its nonce is used). */
  private sweepSoon(now: number): void {
    if (!this.driver) return;
    const d = this.driver;
    // One sweep at a time: a call while one runs joins it.
    this.sweeping.run('sweep', async () => {
      for await (const e of d.entries(usedNonceDir())) {
        if (e.mtimeMs + 2 * this.windowMs + 60_000 < now) await d.delete(e.key);
      }
    }).catch(() => {});
  }

  private prune(now: number): void {
    for (const [h, t] of this.seen) if (t <= now) this.seen.delete(h);
    // Still full (a flood by a registered key): forget the oldest half; the store still has them.
    if (this.seen.size >= this.max) for (const h of [...this.seen.keys()].slice(0, this.max / 2)) this.seen.delete(h);
  }
}
