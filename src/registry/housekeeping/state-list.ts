// A small sorted list of strings kept as JSON under .ollama-registry/ (pins, cached host folders).
import type { Driver } from '../../storage/driver.js';
import { stateKey } from '../../storage/layout.js';

export class StateList {
  constructor(private readonly driver: Driver, private readonly file: string) {}

  async list(): Promise<Set<string>> {
    try {
      const o = JSON.parse((await this.driver.readAll(stateKey(this.file))).toString('utf8')) as unknown;
      return new Set(Array.isArray(o) ? o.filter((x): x is string => typeof x === 'string') : []);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw new Error(`cannot read ${stateKey(this.file)}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Add or remove one entry; returns whether anything changed. */
  async set(entry: string, present: boolean): Promise<boolean> {
    const all = await this.list();
    if (all.has(entry) === present) return false;
    if (present) all.add(entry);
    else all.delete(entry);
    await this.driver.write(stateKey(this.file), Buffer.from(JSON.stringify([...all].sort(), null, 1) + '\n'));
    return true;
  }
}
