// Worker thread of the password pool (password-pool.ts): scrypt here keeps libuv's thread pool,
// which every file read shares, free for serving.
import { scryptSync } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { scryptMaxmem } from './passwords.js';

interface Job { id: number; password: string; salt: Uint8Array; N: number; r: number; p: number; keyLen: number }

parentPort!.on('message', ({ id, password, salt, N, r, p, keyLen }: Job) => {
  try {
    const key = scryptSync(password, salt, keyLen, { N, r, p, maxmem: scryptMaxmem({ N, r }) });
    parentPort!.postMessage({ id, key });
  } catch (e) {
    parentPort!.postMessage({ id, error: (e as Error).message });
  }
});
