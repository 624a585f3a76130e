// The decisions: who a request comes from (principal) and what that principal may do in a
// namespace. Pulls are anonymous unless `auth.anonymousRead` is off; pushes and deletes always
// need a registered key or user with the right in that namespace. Grants are looked up live on
// every decision, so removing a key or a right also ends the tokens already issued for it.
import { Coalesce } from '../coalesce.js';
import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Driver } from '../storage/driver.js';
import { RegistryError } from '../errors.js';
import type { Limits } from '../limits.js';
import { PasswordPool } from './password-pool.js';
import { DUMMY_HASH, verifyPassword } from './passwords.js';
import { FailureThrottle } from './throttle.js';
import { AuthStore, mayDo, type Action, type Grant } from './store.js';
import { UsedNonces } from './nonces.js';
import { loadSecret, Tokens } from './tokens.js';

export type Principal =
  | { kind: 'anonymous'; id: 'anonymous'; label: 'anonymous' }
  | { kind: 'key' | 'user'; id: string; label: string }
  /** A request carrying a valid signed blob URL. */
  | { kind: 'signed-url'; id: 'signed-url'; label: 'signed blob URL' };

export const ANONYMOUS: Principal = { kind: 'anonymous', id: 'anonymous', label: 'anonymous' };

/** Accepted difference between the clock of a signing client and ours. */
export const TS_WINDOW_MS = 5 * 60_000;

export class Auth {
  readonly nonces: UsedNonces;
  private passwordCache = new Map<string, number>();
  private verifying = new Coalesce<string, boolean>();
  readonly passwords: PasswordPool;
  private readonly userFailures: FailureThrottle;
  private readonly addressFailures: FailureThrottle;

  constructor(readonly config: Config['auth'], readonly store: AuthStore, readonly tokens: Tokens,
    limits: Limits, private readonly log: () => Logger, opts: { onHash?: () => void; driver?: Driver } = {}) {
    this.nonces = new UsedNonces(TS_WINDOW_MS, opts.driver);
    this.passwords = new PasswordPool(limits.passwordWorkers, limits.passwordQueue, opts.onHash);
    const lockoutMs = limits.loginLockoutSeconds * 1000;
    this.userFailures = new FailureThrottle(limits.loginFailuresPerUser, lockoutMs);
    this.addressFailures = new FailureThrottle(limits.loginFailuresPerAddress, lockoutMs);
  }

  /** `log` is read at each use (the app's logger may be replaced). */
  static async open(driver: Driver, config: Config, log: () => Logger, onHash?: () => void): Promise<Auth> {
    const store = new AuthStore(driver, (e) => log().error({ err: e.message }, 'key/user record does not parse or cannot be read; keeping the previous contents'));
    await store.refresh();
    return new Auth(config.auth, store, new Tokens(await loadSecret(driver)), config.limits, log, { onHash, driver });
  }

  /** The current grants of a principal; null when it is no longer registered. */
  grants(p: Principal): Grant[] | null {
    if (p.kind === 'key') return this.store.keyByFingerprint(p.id)?.grants ?? null;
    if (p.kind === 'user') return this.store.user(p.id)?.grants ?? null;
    return [];
  }

  may(p: Principal, namespace: string, action: Action): boolean {
    if (action === 'pull' && this.config.anonymousRead) return true;
    return mayDo(this.grants(p) ?? [], namespace, action);
  }

  /** A token's `sub`. */
  subject(p: Principal): string {
    return p.kind === 'key' || p.kind === 'user' ? `${p.kind}:${p.id}` : 'anonymous';
  }

  /** The principal of a token's `sub`, if still registered. */
  fromSubject(sub: string): Principal | null {
    if (sub === 'anonymous') return ANONYMOUS;
    if (sub.startsWith('key:')) {
      const k = this.store.keyByFingerprint(sub.slice(4));
      return k ? keyPrincipal(k.fingerprint, k.comment) : null;
    }
    if (sub.startsWith('user:')) {
      const u = this.store.user(sub.slice(5));
      return u ? { kind: 'user', id: u.name, label: `user ${u.name}` } : null;
    }
    return null;
  }

  /**
   * A user by name and password, asked from address `ip`; verified hashes are remembered for a
   * minute (scrypt is slow on purpose). An unknown name costs the same scrypt as a known one.
   * After too many failures for the name or from the address: 429 with Retry-After, no scrypt.
   */
  async checkPassword(name: string, password: string, ip = ''): Promise<Principal | null> {
    const u = this.store.user(name);
    const stored = u?.password ?? DUMMY_HASH;
    const key = createHash('sha256').update(`${name}\0${password}\0${stored}`).digest('hex');
    const principal: Principal | null = u ? { kind: 'user', id: u.name, label: `user ${u.name}` } : null;
    const until = this.passwordCache.get(key);
    // A password already verified passes even while its name is throttled by someone else's guesses.
    if (principal && until !== undefined && until >= Date.now()) return principal;
    const waitMs = Math.max(this.userFailures.blockedFor(name), this.addressFailures.blockedFor(ip));
    if (waitMs > 0) {
      const s = Math.ceil(waitMs / 1000);
      throw new RegistryError('TOOMANYREQUESTS', `too many failed sign-ins for this user name or from this address; try again in ${s} s`, { headers: { 'Retry-After': String(s) } });
    }
    // The same check already running (a client's parallel requests) is awaited, not repeated.
    const verified = await this.verifying.run(key, () => verifyPassword(password, stored, this.passwords.derive));
    if (!verified || !principal) {
      const lockedName = this.userFailures.fail(name);
      const lockedAddress = this.addressFailures.fail(ip);
      if (lockedName || lockedAddress) {
        this.log().warn({ audit: 'throttled', user: name.slice(0, 100), ip, by: lockedName ? 'user' : 'address' }, 'too many failed sign-ins: refusing further attempts for a while');
      }
      return null;
    }
    if (this.passwordCache.size > 10_000) this.passwordCache.clear();
    this.passwordCache.set(key, Date.now() + 60_000);
    return principal;
  }
}

export function keyPrincipal(fingerprint: string, comment?: string): Principal {
  return { kind: 'key', id: fingerprint, label: `key ${fingerprint}${comment ? ` (${comment})` : ''}` };
}

/** The key/user records of a store, for the CLI (no server, nothing created). */
export async function authStoreAt(driver: Driver): Promise<AuthStore> {
  const store = new AuthStore(driver);
  await store.refresh(true);
  return store;
}
