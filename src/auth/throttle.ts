// Failed sign-ins per key (a user name, an address): after `limit` failures within `windowMs`,
// the key is refused until a whole window has passed since its last failure. Refusing is cheap
// (no scrypt), which is the point. The map is capped, so a flood of names cannot grow it.

interface Entry {
  count: number;
  /** When the count starts over (a window after the last failure once over the limit). */
  until: number;
}

export class FailureThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly limit: number, private readonly windowMs: number, private readonly max = 50_000) {}

  /** Milliseconds before `key` may try again; 0 when it may now. */
  blockedFor(key: string, now = Date.now()): number {
    const e = this.entries.get(key);
    return e && e.count >= this.limit && now < e.until ? e.until - now : 0;
  }

  /** Count a failure; true when this one reached the limit (worth an audit line). */
  fail(key: string, now = Date.now()): boolean {
    let e = this.entries.get(key);
    if (!e || now >= e.until) {
      if (this.entries.size >= this.max) this.prune(now);
      e = { count: 0, until: now + this.windowMs };
    }
    e.count++;
    if (e.count >= this.limit) e.until = now + this.windowMs;
    // Re-insert: the map's order is then oldest-failure first, for prune().
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.count === this.limit;
  }

  private prune(now: number): void {
    for (const [k, e] of this.entries) if (now >= e.until) this.entries.delete(k);
    // Still full: forget the oldest quarter (their windows are the nearest to ending).
    if (this.entries.size >= this.max) {
      let n = this.max >> 2;
      for (const k of this.entries.keys()) {
        if (n-- <= 0) break;
        this.entries.delete(k);
      }
    }
  }
}
