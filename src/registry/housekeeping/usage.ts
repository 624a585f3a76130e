// When each tag was last pulled, tracked cheaply: a manifest GET only sets a map entry; the map
// is merged into .ollama-registry/last-pulled.json every minute and at shutdown. No disk write
// happens on the request path, and a crash loses at most a minute of "last pulled" times.
import type { Driver } from '../../storage/driver.js';
import { stateKey } from '../../storage/layout.js';
import { refName } from '../manifests/manifest-index.js';
import type { ManifestRef } from '../manifests/manifests.js';

const FILE = 'last-pulled.json';

export class UsageTracker {
  private pending = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly driver: Driver) {}

  /** Record a pull (hot path: memory only). */
  touch(ref: ManifestRef, at = Date.now()): void {
    const k = refName(ref);
    if ((this.pending.get(k) ?? 0) < at) this.pending.set(k, at);
  }

  private async readFile(): Promise<Record<string, number>> {
    try {
      const o = JSON.parse((await this.driver.readAll(stateKey(FILE))).toString('utf8')) as unknown;
      return o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, number>) : {};
    } catch {
      return {}; // absent or damaged: it is only a hint
    }
  }

  /** Last pull of every tag known (file merged with what is not flushed yet), ms since epoch. */
  async all(): Promise<Map<string, number>> {
    const out = new Map(Object.entries(await this.readFile()).filter(([, v]) => typeof v === 'number'));
    for (const [k, v] of this.pending) if ((out.get(k) ?? 0) < v) out.set(k, v);
    return out;
  }

  /** Merge what was recorded into the file (serialized: one writer at a time in this process). */
  flush(keep?: Set<string>): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.pending.size === 0 && !keep) return;
      const taken = new Map(this.pending);
      const merged = await this.all();
      let dropped = 0;
      if (keep) for (const k of merged.keys()) if (!keep.has(k) && merged.delete(k)) dropped++;
      if (taken.size === 0 && dropped === 0) return;
      await this.driver.write(stateKey(FILE), Buffer.from(JSON.stringify(Object.fromEntries([...merged].sort()), null, 1)));
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
