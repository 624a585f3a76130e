// The decisions: who a request comes from (principal) and what that principal may do in a
// namespace. Pulls are anonymous unless `auth.anonymousRead` is off; pushes and deletes always
// need a registered key or user with the right in that namespace. Grants are looked up live on
// every decision, so removing a key or a right also ends the tokens already issued for it.
import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { FsDriver } from '../storage/fs.js';
import { keysKey, tokenSecretKey, usersKey } from '../storage/layout.js';
import { verifyPassword } from './passwords.js';
import { AuthStore, mayDo, type Action, type Grant } from './store.js';
import { loadSecret, NonceMemory, Tokens } from './tokens.js';

export type Principal =
  | { kind: 'anonymous'; id: 'anonymous'; label: 'anonymous' }
  | { kind: 'key' | 'user'; id: string; label: string }
  /** A request carrying a valid signed blob URL. */
  | { kind: 'signed-url'; id: 'signed-url'; label: 'signed blob URL' };

export const ANONYMOUS: Principal = { kind: 'anonymous', id: 'anonymous', label: 'anonymous' };

/** Accepted difference between the clock of a signing client and ours. */
export const TS_WINDOW_MS = 5 * 60_000;

export class Auth {
  readonly nonces = new NonceMemory(TS_WINDOW_MS);
  private passwordCache = new Map<string, number>();

  constructor(readonly config: Config['auth'], readonly store: AuthStore, readonly tokens: Tokens) {}

  /** `log` is read at each use (the app's logger may be replaced). */
  static open(driver: FsDriver, config: Config, log: () => Logger): Auth {
    const store = new AuthStore(driver.path(keysKey()), driver.path(usersKey()), (e) =>
      log().error({ err: e.message }, 'key/user file does not parse; keeping the previous contents'));
    return new Auth(config.auth, store, new Tokens(loadSecret(driver.path(tokenSecretKey()))));
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

  /** A user by name and password; verified hashes are remembered for a minute (scrypt is slow on purpose). */
  async checkPassword(name: string, password: string): Promise<Principal | null> {
    const u = this.store.user(name);
    if (!u) return null;
    const key = createHash('sha256').update(`${name}\0${password}\0${u.password}`).digest('hex');
    const until = this.passwordCache.get(key);
    if (until === undefined || until < Date.now()) {
      if (!(await verifyPassword(password, u.password))) return null;
      if (this.passwordCache.size > 10_000) this.passwordCache.clear();
      this.passwordCache.set(key, Date.now() + 60_000);
    }
    return { kind: 'user', id: u.name, label: `user ${u.name}` };
  }
}

export function keyPrincipal(fingerprint: string, comment?: string): Principal {
  return { kind: 'key', id: fingerprint, label: `key ${fingerprint}${comment ? ` (${comment})` : ''}` };
}

/** The key/user files of a data folder, for the CLI (no server, nothing created). */
export function authStoreAt(driver: FsDriver): AuthStore {
  return new AuthStore(driver.path(keysKey()), driver.path(usersKey()));
}
