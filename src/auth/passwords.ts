// Passwords of users (for skopeo, docker, curl), hashed at rest with scrypt.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const PARAMS = { N: 1 << 15, r: 8, p: 1 };
const KEY_LEN = 32;

/** One scrypt derivation; the server passes its own (on worker threads, see password-pool.ts). */
export type Derive = (password: string, salt: Buffer, o: ScryptOptions & { N: number; r: number; p: number }, keyLen: number) => Promise<Buffer>;

/** The memory scrypt needs for these parameters (Node refuses more than its default 32 MiB otherwise). */
export function scryptMaxmem(o: { N: number; r: number }): number {
  return 256 * o.N * o.r;
}

/** On libuv's thread pool: fine for the CLI, not for a server whose file reads share that pool. */
const libuvDerive: Derive = (password, salt, o, keyLen) => new Promise((resolve, reject) =>
  scrypt(password, salt, keyLen, { ...o, maxmem: scryptMaxmem(o) }, (e, k) => (e ? reject(e) : resolve(k))));

/** `scrypt$N$r$p$<salt b64>$<hash b64>` */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await libuvDerive(password, salt, PARAMS, KEY_LEN);
  return `scrypt$${PARAMS.N}$${PARAMS.r}$${PARAMS.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * Checked against for user names that do not exist: the same parameters as a real hash, so an
 * unknown name costs the same work (and time) as a known one. No password matches it.
 */
export const DUMMY_HASH = `scrypt$${PARAMS.N}$${PARAMS.r}$${PARAMS.p}$${randomBytes(16).toString('base64')}$${Buffer.alloc(KEY_LEN).toString('base64')}`;

export async function verifyPassword(password: string, stored: string, derive: Derive = libuvDerive): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N > 1 << 20 || r > 32 || p > 16) return false;
  const want = Buffer.from(m[5]!, 'base64');
  const got = await derive(password, Buffer.from(m[4]!, 'base64'), { N, r, p }, KEY_LEN);
  return got.length === want.length && timingSafeEqual(got, want);
}
