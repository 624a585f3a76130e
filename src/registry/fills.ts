// The registry of fills in this process: one per digest (opened on first use, or resumed from
// the state a previous run left), a lock file against a second process on the same data folder,
// and blob sizes from upstream HEADs or from manifests that passed through. See fill.ts for how
// one fill brings a blob in.
import { mkdir, open, readFile, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import { digestHex } from '../names.js';
import { alive } from '../storage/fs.js';
import { fillKey, fillsDir } from '../storage/layout.js';
import { Fill, upstreamToRegistryError, type FillDeps, type FillSource, type FillState } from './fill.js';

export { FILL_TUNING, Fill, upstreamToRegistryError, type FillSource } from './fill.js';

export class Fills {
  private fills = new Map<string, Fill>();
  private opening = new Map<string, Promise<Fill | null>>();
  private sizes = new Map<string, { size: number; index: number }>();

  constructor(private readonly deps: FillDeps) {}

  /** Sizes learned from manifests that came through the cache: HEAD then needs no upstream round trip. */
  learnSizes(layers: Array<{ digest: string; size: number }>): void {
    if (this.sizes.size > 10_000) this.sizes.clear();
    for (const l of layers) if (!this.sizes.has(l.digest)) this.sizes.set(l.digest, { size: l.size, index: 0 });
  }

  /** The fill in progress for a digest, if any. */
  active(digest: string): Fill | undefined {
    const f = this.fills.get(digest);
    return f && !f.error && !f.verified ? f : undefined;
  }

  /** A blob's size from the first upstream that has it (HEAD only, no body). */
  async size(digest: string, src: FillSource): Promise<{ size: number; index: number }> {
    const fill = this.active(digest);
    if (fill) return { size: fill.size, index: 0 };
    const known = this.sizes.get(digest);
    if (known) return known;
    let last: unknown;
    for (const [index, up] of src.upstreams.entries()) {
      try {
        const size = await up.blobSize(src.namespace, src.model, digest);
        if (this.sizes.size > 10_000) this.sizes.clear();
        this.sizes.set(digest, { size, index });
        return { size, index };
      } catch (e) {
        last = e;
      }
    }
    throw upstreamToRegistryError(last ?? new RegistryError('BLOB_UNKNOWN', `blob unknown: ${digest} is not in this registry and no upstream is configured for ${src.namespace}`), 'blob');
  }

  /** The fill of a digest, started or resumed on first use; null when the blob is already published. */
  async get(digest: string, src: FillSource): Promise<Fill | null> {
    digestHex(digest);
    for (;;) {
      const f = this.fills.get(digest);
      if (f && !f.error) return f.verified ? null : f;
      if (f) {
        this.sizes.delete(digest); // a size learned from a manifest may have been the problem
        await f.closed;
        if (this.fills.get(digest) === f) this.fills.delete(digest);
        continue;
      }
      // Check and claim in one step (no await in between), so two requests never open two fills.
      let p = this.opening.get(digest);
      if (!p) {
        p = (async () => ((await this.deps.blobs.size(digest)) !== null ? null : this.open(digest, src)))()
          .finally(() => this.opening.delete(digest));
        this.opening.set(digest, p);
      }
      return await p;
    }
  }

  private async readState(digest: string): Promise<FillState | null> {
    try {
      const s = JSON.parse(await readFile(this.deps.driver.path(fillKey(digest, 'state.json')), 'utf8')) as FillState;
      const ok = s.version === 1 && s.digest === digest && Number.isSafeInteger(s.size) && s.size >= 0 && Array.isArray(s.have) &&
        s.have.every((r) => Array.isArray(r) && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0]! >= 0 && r[0]! <= r[1]! && r[1]! <= s.size);
      return ok ? s : null;
    } catch {
      return null;
    }
  }

  private async lock(digest: string): Promise<void> {
    const p = this.deps.driver.path(fillKey(digest, 'lock'));
    await mkdir(path.dirname(p), { recursive: true });
    for (let i = 0; i < 2; i++) {
      try {
        await writeFile(p, String(process.pid), { flag: 'wx' });
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const pid = Number(await readFile(p, 'utf8').catch(() => ''));
        if (pid === process.pid) return;
        if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
          throw new RegistryError('UNAVAILABLE', `blob ${digest} is being fetched by another ollama-registry process (pid ${pid}) on this data folder; try again when it is done`);
        }
        await unlink(p).catch(() => {});
      }
    }
  }

  private async open(digest: string, src: FillSource): Promise<Fill> {
    await this.lock(digest);
    try {
      const state = await this.readState(digest);
      let size: number;
      let index = 0;
      if (state) {
        size = state.size;
        index = Math.max(0, src.upstreams.findIndex((u) => u.name === state.upstream));
      } else ({ size, index } = await this.size(digest, src));
      const dataPath = this.deps.driver.path(fillKey(digest, 'data'));
      let fh: FileHandle;
      let have = state?.have ?? [];
      try {
        fh = await open(dataPath, 'r+');
        if ((await fh.stat()).size !== size) {
          await fh.truncate(size);
          have = [];
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        fh = await open(dataPath, 'w+', 0o644);
        await fh.truncate(size);
        have = [];
      }
      const fill = new Fill(digest, size, fh, have, src, index, this.deps);
      this.fills.set(digest, fill);
      this.deps.metrics?.fillsInFlight.inc();
      void fill.settled.then(() => this.deps.metrics?.fillsInFlight.dec());
      void fill.settled.then(() => {
        if (fill.verified && this.fills.get(digest) === fill) this.fills.delete(digest);
      });
      if (state && have.length) this.deps.log.info({ digest, size, filled: fill.filled() }, 'resuming a fill from upstream');
      fill.start();
      return fill;
    } catch (e) {
      await unlink(this.deps.driver.path(fillKey(digest, 'lock'))).catch(() => {});
      throw e;
    }
  }

  /** Fills left by a previous run, with where they came from. */
  async pending(): Promise<Array<{ digest: string; namespace: string; model: string }>> {
    const out: Array<{ digest: string; namespace: string; model: string }> = [];
    for (const name of await this.deps.driver.list(fillsDir())) {
      const m = /^sha256-([0-9a-f]{64})$/.exec(name);
      if (!m) continue;
      const s = await this.readState(`sha256:${m[1]}`);
      if (s) out.push({ digest: s.digest, namespace: s.namespace, model: s.model });
    }
    return out;
  }

  /** Stop every fill and record its progress (shutdown). */
  async stop(): Promise<void> {
    const all = [...this.fills.values()];
    for (const f of all) f.fail(new RegistryError('UNAVAILABLE', 'the registry is shutting down; pull again in a moment'));
    await Promise.all(all.map((f) => f.closed));
  }
}
