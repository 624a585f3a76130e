// One in-flight promise per key: callers that ask while a call runs share it (and its error);
// it is forgotten once settled, so the next call runs afresh.
export class Coalesce<K, V> {
  private readonly running = new Map<K, Promise<V>>();

  /** `fn()`'s promise, or the one already running for `key`. `fn` starts synchronously. */
  run(key: K, fn: () => Promise<V>): Promise<V> {
    let p = this.running.get(key);
    if (!p) {
      p = new Promise<V>((resolve) => resolve(fn())).finally(() => this.running.delete(key));
      this.running.set(key, p);
    }
    return p;
  }

  /** Calls running now. */
  get size(): number {
    return this.running.size;
  }
}
