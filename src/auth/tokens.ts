// Tokens the token endpoint issues (HS256 JWTs, opaque to clients), signed blob URLs for the
// downloads that carry no Authorization (used nonces of signed requests: nonces.ts).
// The HMAC key lives in the store at .ollama-registry/token-secret (private); deleting it revokes everything.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Action } from './store.js';
import type { Driver } from '../storage/driver.js';
import { tokenSecretKey } from '../storage/layout.js';

export interface Access {
  type: 'repository' | 'registry';
  /** `<namespace>/<model>` (or `catalog`). */
  name: string;
  actions: Action[];
}

export interface TokenClaims {
  /** `key:<fingerprint>`, `user:<name>` or `anonymous`. */
  sub: string;
  access: Access[];
  /** Asked for without any scope (the web page's sign-in): good for whatever the principal may do. */
  any?: true;
  iat: number;
  exp: number;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const HEADER = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
/** header.claims.signature, base64url without padding. */
const TOKEN_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Read the secret from the store, creating it (private) on first use; every replica gets the same one. */
export async function loadSecret(driver: Driver): Promise<Buffer> {
  for (let i = 0; i < 3; i++) {
    const cur = await driver.readVersioned(tokenSecretKey());
    if (cur) {
      const hex = cur.body.toString('utf8').trim();
      if (/^[0-9a-f]{64}$/.test(hex)) return Buffer.from(hex, 'hex');
      throw new Error(`${tokenSecretKey()} is not 64 hex characters; delete it to make a new one (this ends every issued token)`);
    }
    const secret = randomBytes(32);
    // Another process may make it first: then use theirs.
    if (await driver.createIfAbsent(tokenSecretKey(), Buffer.from(`${secret.toString('hex')}\n`))) return secret;
  }
  throw new Error(`${tokenSecretKey()} could not be read or created`);
}

export class Tokens {
  private key?: Buffer;

  /** The secret, or how to get it on first use (so commands that never sign write nothing). */
  constructor(private readonly secret: Buffer | (() => Buffer)) {}

  private mac(data: string): Buffer {
    this.key ??= typeof this.secret === 'function' ? this.secret() : this.secret;
    return createHmac('sha256', this.key).update(data).digest();
  }

  issue(sub: string, access: Access[], ttlSeconds: number, any = false): { token: string; claims: TokenClaims } {
    const iat = Math.floor(Date.now() / 1000);
    const claims: TokenClaims = { sub, access, iat, exp: iat + Math.round(ttlSeconds), ...(any ? { any: true as const } : {}) };
    const body = `${HEADER}.${b64url(JSON.stringify(claims))}`;
    return { token: `${body}.${this.mac(body).toString('base64url')}`, claims };
  }

  /** The claims of a genuine token, or why it is not one. */
  verify(token: string): TokenClaims | { invalid: string } {
    // Strict: exactly what issue() makes. Node's base64 decoder skips characters it does not
    // know, so without this a token with junk appended would still verify.
    const parts = token.split('.');
    if (parts.length !== 3 || token.length > 8192 || !TOKEN_RE.test(token)) return { invalid: 'malformed token' };
    // Compared as text: two spellings of one signature (spare low bits in the last character) are not both valid.
    const sig = Buffer.from(parts[2]!);
    const want = Buffer.from(this.mac(`${parts[0]}.${parts[1]}`).toString('base64url'));
    if (parts[0] !== HEADER || sig.length !== want.length || !timingSafeEqual(sig, want)) return { invalid: 'token signature does not match (forged, or issued before the secret changed)' };
    let claims: TokenClaims;
    try {
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as TokenClaims;
    } catch {
      return { invalid: 'malformed token' };
    }
    if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return { invalid: 'token expired' };
    if (typeof claims.sub !== 'string' || !Array.isArray(claims.access)) return { invalid: 'malformed token' };
    return claims;
  }

  private blobMac(namespace: string, model: string, digest: string, exp: number): string {
    return this.mac(`blob\n${namespace.toLowerCase()}/${model.toLowerCase()}\n${digest}\n${exp}`).toString('base64url');
  }

  /** The `sig` query value that lets anyone holding the URL download one blob until it expires. */
  signBlob(namespace: string, model: string, digest: string, ttlSeconds: number): string {
    const exp = Math.floor(Date.now() / 1000) + Math.round(ttlSeconds);
    return `${exp}.${this.blobMac(namespace, model, digest, exp)}`;
  }

  verifyBlob(namespace: string, model: string, digest: string, sig: string): boolean {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(sig);
    if (!m) return false;
    const exp = Number(m[1]);
    if (exp * 1000 < Date.now()) return false;
    const a = Buffer.from(m[2]!);
    const b = Buffer.from(this.blobMac(namespace, model, digest, exp));
    return a.length === b.length && timingSafeEqual(a, b);
  }
}
