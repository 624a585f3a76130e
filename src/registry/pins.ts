// Tags kept from eviction (`ollama-registry pin NAME`), as a small JSON list under .ollama-registry/.
import type { Driver } from '../storage/driver.js';
import { stateKey } from '../storage/layout.js';

const FILE = 'pins.json';

export class Pins {
  constructor(private readonly driver: Driver) {}

  async list(): Promise<Set<string>> {
    try {
      const o = JSON.parse((await this.driver.readAll(stateKey(FILE))).toString('utf8')) as unknown;
      return new Set(Array.isArray(o) ? o.filter((x): x is string => typeof x === 'string') : []);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw new Error(`cannot read ${stateKey(FILE)}: ${(e as Error).message}`);
    }
  }

  /** Add or remove one name; returns whether anything changed. */
  async set(name: string, pinned: boolean): Promise<boolean> {
    const all = await this.list();
    if (all.has(name) === pinned) return false;
    if (pinned) all.add(name);
    else all.delete(name);
    await this.driver.write(stateKey(FILE), Buffer.from(JSON.stringify([...all].sort(), null, 1) + '\n'));
    return true;
  }
}
