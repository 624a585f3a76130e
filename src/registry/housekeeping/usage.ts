// When each tag was last pulled, tracked cheaply: a manifest GET only sets a map entry. Every
// process (replica) keeps its own record, .ollama-registry/last-pulled/<owner>.json, written from
// memory every minute and at shutdown; readers (ls, gc, eviction) merge every owner's record,
// taking the latest time per tag. Nothing is read, merged and rewritten across processes, no
// disk write happens on the request path, and a crash loses at most a minute of times.
// The owner is the host name: processes on one host share a record (the last writer's hint wins).
import os from 'node:os';
import { readAllIfExists, type Driver } from '../../storage/driver.js';
import { lastPulledDir, lastPulledKey, stateKey } from '../../storage/layout.js';
import { refName } from '../manifests/manifest-index.js';
import type { ManifestRef } from '../manifests/manifests.js';

/** The one file older versions kept for every process: read as one more owner, never written. */
const LEGACY = 'last-pulled.json';

/** This process's owner name: its host name, as a storage key token. */
export function ownerName(): string {
  return os.hostname().replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_').slice(0, 100) || 'host';
}

function parse(body: Buffer | null): Map<string, number> {
  try {
    const o = body ? (JSON.parse(body.toString('utf8')) as unknown) : {};
    if (!o || typeof o !== 'object' || Array.isArray(o)) return new Map();
    return new Map(Object.entries(o).filter((e): e is [string, number] => typeof e[1] === 'number'));
  } catch {
    return new Map(); // damaged: it is only a hint
  }
}

export class UsageTracker {
  private pending = new Map<string, number>();
  /** This owner's record as last read or written. */
  private mine?: Map<string, number>;
  private timer?: NodeJS.Timeout;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly driver: Driver, private readonly owner = ownerName()) {}

  /** Record a pull (hot path: memory only). */
  touch(ref: ManifestRef, at = Date.now()): void {
    const k = refName(ref);
    if ((this.pending.get(k) ?? 0) < at) this.pending.set(k, at);
  }

  /** Last pull of every tag known (every owner's record and what is not flushed yet), ms since epoch. */
  async all(): Promise<Map<string, number>> {
    const out = parse(await readAllIfExists(this.driver, stateKey(LEGACY)).catch(() => null));
    const take = (m: Map<string, number>) => { for (const [k, v] of m) if ((out.get(k) ?? 0) < v) out.set(k, v); };
    for await (const e of this.driver.entries(lastPulledDir())) {
      if (e.key.endsWith('.json')) take(parse(await readAllIfExists(this.driver, e.key).catch(() => null)));
    }
    take(this.pending);
    return out;
  }

  /** Write this owner's record: what it had, plus what was recorded since; `keep` drops other names. */
  flush(keep?: Set<string>): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.pending.size === 0 && !keep) return;
      const taken = new Map(this.pending);
      const mine = new Map(this.mine ?? parse(await readAllIfExists(this.driver, lastPulledKey(this.owner))));
      for (const [k, v] of taken) if ((mine.get(k) ?? 0) < v) mine.set(k, v);
      let dropped = 0;
      if (keep) for (const k of [...mine.keys()]) if (!keep.has(k) && mine.delete(k)) dropped++;
      if (taken.size === 0 && dropped === 0 && this.mine) return;
      await this.driver.write(lastPulledKey(this.owner), Buffer.from(JSON.stringify(Object.fromEntries([...mine].sort()), null, 1)));
      this.mine = mine;
      for (const [k, v] of taken) if (this.pending.get(k) === v) this.pending.delete(k);
    });
    this.chain = run.catch(() => {});
    return run;
  }

  /** Flush every `intervalMs` until stop(). */
  start(intervalMs = 60_000, onError: (e: unknown) => void = () => {}): void {
    this.timer ??= setInterval(() => void this.flush().catch(onError), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
