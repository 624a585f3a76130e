// Password checks off the file-I/O pool: scrypt runs on a few worker threads of its own, with a
// capped queue, so a flood of wrong passwords delays other sign-ins but never a blob or manifest
// read (which need libuv's 4 threads). A full queue is a 503 with Retry-After, not more waiting.
import { Worker } from 'node:worker_threads';
import { RegistryError } from '../errors.js';
import type { Derive } from './passwords.js';

interface Job {
  id: number;
  msg: { id: number; password: string; salt: Buffer; N: number; r: number; p: number; keyLen: number };
  resolve(key: Buffer): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

export class PasswordPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;

  constructor(private readonly threads: number, private readonly queueCap: number, private readonly onHash: () => void = () => {}) {}

  readonly derive: Derive = (password, salt, o, keyLen) => new Promise<Buffer>((resolve, reject) => {
    if (this.queue.length >= this.queueCap) {
      reject(new RegistryError('UNAVAILABLE', 'too many password checks are waiting; try again shortly', { headers: { 'Retry-After': '1' } }));
      return;
    }
    const id = this.nextId++;
    this.queue.push({ id, msg: { id, password, salt, N: o.N, r: o.r, p: o.p, keyLen }, resolve, reject });
    this.pump();
  });

  /** End the threads (the pool starts new ones if used again). */
  async close(): Promise<void> {
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.job);
      if (!slot && this.slots.length < this.threads) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.job = job;
      this.onHash();
      slot.worker.ref(); // a check in flight keeps the process alive; an idle thread does not
      slot.worker.postMessage(job.msg);
    }
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./scrypt-worker.js', import.meta.url));
    const slot: Slot = { worker };
    worker.on('message', (m: { id: number; key?: Uint8Array; error?: string }) => {
      const job = slot.job;
      if (!job || job.id !== m.id) return;
      slot.job = undefined;
      worker.unref();
      if (m.key) job.resolve(Buffer.from(m.key));
      else job.reject(new Error(`scrypt failed: ${m.error}`));
      this.pump();
    });
    const gone = (e: Error) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      slot.job?.reject(e);
      slot.job = undefined;
      this.pump();
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`password worker exited (${code})`)));
    // Idle threads must not keep a finished process (a CLI command, a test) alive; after the
    // listeners, which would take a reference again.
    worker.unref();
    this.slots.push(slot);
    return slot;
  }
}
