// An in-memory driver: the reference for the driver conformance suite, and a store for tests
// that need no disk. Objects are flat keys, as on an object store: no folders, no rename
// guarantees beyond what the interface promises.
import { randomBytes } from 'node:crypto';
import { readFile, unlink } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import type { ByteRange, Driver, Entry, PendingWrite, Stat, Versioned } from './driver.js';

interface Obj {
  body: Buffer;
  mtimeMs: number;
  version: string;
}

function missing(key: string): Error {
  return Object.assign(new Error(`memory driver: no such key ${key}`), { code: 'ENOENT' });
}

export class MemoryDriver implements Driver {
  readonly description = 'memory';
  private objects = new Map<string, Obj>();

  private put(key: string, body: Buffer): string {
    const version = randomBytes(12).toString('hex');
    this.objects.set(key, { body, mtimeMs: Date.now(), version });
    return version;
  }

  /** The keys under a prefix, as `list` and `entries` see them. */
  private under(prefix: string): string[] {
    const p = prefix === '' ? '' : `${prefix}/`;
    return [...this.objects.keys()].filter((k) => k.startsWith(p));
  }

  async stat(key: string): Promise<Stat | null> {
    const o = this.objects.get(key);
    return o ? { size: o.body.length, mtimeMs: o.mtimeMs } : null;
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const o = this.objects.get(key);
    if (!o) throw missing(key);
    return Readable.from([range ? o.body.subarray(range.start, range.end + 1) : o.body]);
  }

  async readAll(key: string): Promise<Buffer> {
    const o = this.objects.get(key);
    if (!o) throw missing(key);
    return Buffer.from(o.body);
  }

  async write(key: string, body: Readable | Buffer): Promise<{ size: number }> {
    const w = await this.create(key);
    if (Buffer.isBuffer(body)) w.stream.end(body);
    else await pipeline(body, w.stream, { end: true });
    return w.commit();
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async list(prefix: string): Promise<string[]> {
    const p = prefix === '' ? '' : `${prefix}/`;
    return [...new Set(this.under(prefix).map((k) => k.slice(p.length).split('/')[0]!))].sort();
  }

  async putFile(localPath: string, key: string): Promise<{ how: 'copied' }> {
    this.put(key, await readFile(localPath));
    await unlink(localPath).catch(() => {});
    return { how: 'copied' };
  }

  async create(key: string): Promise<PendingWrite> {
    const chunks: Buffer[] = [];
    let state: 'open' | 'done' = 'open';
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(Buffer.from(chunk));
        cb();
      },
    });
    return {
      stream,
      commit: async () => {
        if (state !== 'open') throw new Error(`memory driver: ${key} was already committed or cancelled`);
        state = 'done';
        if (!stream.writableEnded) stream.end();
        await finished(stream);
        const body = Buffer.concat(chunks);
        this.put(key, body);
        return { size: body.length };
      },
      cancel: async () => {
        state = 'done';
        stream.destroy();
        chunks.length = 0;
      },
    };
  }

  async *entries(prefix: string): AsyncIterable<Entry> {
    for (const key of this.under(prefix).sort()) {
      const o = this.objects.get(key);
      if (o) yield { key, size: o.body.length, mtimeMs: o.mtimeMs };
    }
  }

  async readVersioned(key: string): Promise<Versioned | null> {
    const o = this.objects.get(key);
    return o ? { body: Buffer.from(o.body), version: o.version } : null;
  }

  async createIfAbsent(key: string, body: Buffer): Promise<string | null> {
    return this.objects.has(key) ? null : this.put(key, Buffer.from(body));
  }

  async replaceIf(key: string, body: Buffer, version: string): Promise<string | null> {
    return this.objects.get(key)?.version === version ? this.put(key, Buffer.from(body)) : null;
  }

  async deleteIf(key: string, version: string): Promise<boolean> {
    if (this.objects.get(key)?.version !== version) return false;
    this.objects.delete(key);
    return true;
  }
}
