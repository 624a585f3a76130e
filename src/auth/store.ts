// Who may do what: machine keys (ollama's ed25519 keys) and users with passwords (for OCI tools),
// each with grants per namespace. Kept as two JSON records in the store (.ollama-registry/, private),
// edited by the `keys` and `users` commands with conditional writes (two editors, or two replicas,
// never lose each other's change), and re-read by a running server in the background once a
// second, so a change takes effect without a restart and costs nothing per request.
import { parseKeyBlob } from './sshkey.js';
import type { Driver } from '../storage/driver.js';
import { keysKey, usersKey } from '../storage/layout.js';

export type Action = 'pull' | 'push' | 'delete';
export const ACTIONS: Action[] = ['pull', 'push', 'delete'];

export interface Grant {
  /** A namespace (matched case-insensitively), or `*` for all. */
  namespace: string;
  actions: Action[];
}

export interface KeyEntry {
  /** `ssh-ed25519 <base64>` without comment. */
  key: string;
  fingerprint: string;
  comment?: string;
  grants: Grant[];
  added: string;
}

export interface UserEntry {
  name: string;
  /** scrypt hash (see passwords.ts). */
  password: string;
  grants: Grant[];
  added: string;
}

interface FileState<T> {
  items: T[];
  /** The record's version ('' when absent). */
  sig: string;
}

/** Each round of a conflict has one winner, so this many editors at once still all get through. */
const EDIT_TRIES = 30;

export function mayDo(grants: Grant[], namespace: string, action: Action): boolean {
  const ns = namespace.toLowerCase();
  return grants.some((g) => (g.namespace === '*' || g.namespace.toLowerCase() === ns) && g.actions.includes(action));
}

/** Set the actions of each given namespace (replacing what that namespace had). */
export function mergeGrants(old: Grant[], add: Grant[]): Grant[] {
  const out = old.filter((g) => !add.some((a) => a.namespace.toLowerCase() === g.namespace.toLowerCase()));
  return [...out, ...add];
}

export function formatGrants(grants: Grant[]): string {
  return grants.map((g) => `${g.namespace}:${g.actions.join(',')}`).join(' ') || '(none)';
}

export class AuthStore {
  private keysState: FileState<KeyEntry> = { items: [], sig: '' };
  private usersState: FileState<UserEntry> = { items: [], sig: '' };
  private byBlob = new Map<string, KeyEntry>();
  private checkedAt = 0;
  private refreshing?: Promise<void>;
  private timer?: NodeJS.Timeout;

  /** `onError` hears about records that no longer parse. Call `refresh(true)` once before use. */
  constructor(private readonly driver: Driver, private readonly onError: (e: Error) => void = () => {}) {}

  /** Re-read both records in the background once a second (a server); the timer never holds the process. */
  watch(): void {
    this.timer ??= setInterval(() => void this.refresh().catch((e: Error) => this.onError(e)), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Re-read the records when they changed; at most once a second unless forced (then errors throw). */
  refresh(force = false): Promise<void> {
    const now = Date.now();
    if (!force && (now - this.checkedAt < 1000 || this.refreshing)) return this.refreshing ?? Promise.resolve();
    this.checkedAt = now;
    const run = (async () => {
      this.keysState = this.parse(await this.driver.readVersioned(keysKey()), this.keysState, 'keys', force);
      this.usersState = this.parse(await this.driver.readVersioned(usersKey()), this.usersState, 'users', force);
      this.byBlob = new Map(this.keysState.items.map((k) => [k.key.split(' ')[1]!, k]));
    })();
    this.refreshing = run;
    void run.finally(() => { if (this.refreshing === run) this.refreshing = undefined; }).catch(() => {});
    return run;
  }

  private parse<T>(rec: { body: Buffer; version: string } | null, old: FileState<T>, field: string, strict: boolean): FileState<T> {
    if (!rec) return { items: [], sig: '' };
    if (rec.version === old.sig) return old;
    try {
      const items = (JSON.parse(rec.body.toString('utf8')) as Record<string, unknown>)[field];
      if (!Array.isArray(items)) throw new Error(`"${field}" must be a list`);
      return { items: items as T[], sig: rec.version };
    } catch (e) {
      const err = new Error(`${field === 'keys' ? keysKey() : usersKey()}: ${(e as Error).message}`);
      if (strict) throw err;
      this.onError(err);
      return { ...old, sig: rec.version };
    }
  }

  /** Start a background re-read when the last one is a second old (the accessors stay synchronous). */
  private kick(): void {
    void this.refresh().catch((e: Error) => this.onError(e));
  }

  keys(): KeyEntry[] {
    this.kick();
    return this.keysState.items;
  }

  users(): UserEntry[] {
    this.kick();
    return this.usersState.items;
  }

  keyByBlob(blob: string): KeyEntry | undefined {
    this.kick();
    return this.byBlob.get(blob);
  }

  keyByFingerprint(fp: string): KeyEntry | undefined {
    return this.keys().find((k) => k.fingerprint === fp);
  }

  user(name: string): UserEntry | undefined {
    return this.users().find((u) => u.name === name);
  }

  /** Is anyone registered at all? */
  empty(): boolean {
    return this.keys().length === 0 && this.users().length === 0;
  }

  // ---- edits (the CLI) ----

  /** Add a key, or change the grants of a known one. */
  async putKey(entry: Omit<KeyEntry, 'added'>): Promise<'added' | 'updated'> {
    let how: 'added' | 'updated' = 'added';
    await this.edit<KeyEntry>(keysKey(), 'keys', (items) => {
      const i = items.findIndex((k) => k.fingerprint === entry.fingerprint);
      how = i >= 0 ? 'updated' : 'added';
      if (i >= 0) items[i] = { ...items[i]!, grants: mergeGrants(items[i]!.grants, entry.grants), ...(entry.comment ? { comment: entry.comment } : {}) };
      else items.push({ ...entry, added: new Date().toISOString() });
      return items;
    });
    return how;
  }

  /** Remove a key given as its line, its base64 or its fingerprint; undefined when unknown. */
  async removeKey(what: string): Promise<KeyEntry | undefined> {
    const parts = what.trim().split(/\s+/);
    const blob = parts[0] === 'ssh-ed25519' ? parts[1] : parts[0];
    const fp = blob && parseKeyBlob(blob)?.fingerprint;
    const target = what.trim().startsWith('SHA256:') ? what.trim() : fp;
    let gone: KeyEntry | undefined;
    await this.edit<KeyEntry>(keysKey(), 'keys', (items) => {
      gone = items.find((k) => k.fingerprint === target);
      return gone ? items.filter((k) => k !== gone) : null;
    });
    return gone;
  }

  async putUser(entry: { name: string; password?: string; grants: Grant[] }): Promise<'added' | 'updated'> {
    let how: 'added' | 'updated' = 'added';
    await this.edit<UserEntry>(usersKey(), 'users', (items) => {
      const i = items.findIndex((u) => u.name === entry.name);
      how = i >= 0 ? 'updated' : 'added';
      if (i >= 0) {
        items[i] = { ...items[i]!, grants: mergeGrants(items[i]!.grants, entry.grants), ...(entry.password ? { password: entry.password } : {}) };
      } else {
        if (!entry.password) throw new Error(`user ${entry.name} needs a password`);
        items.push({ name: entry.name, password: entry.password, grants: entry.grants, added: new Date().toISOString() });
      }
      return items;
    });
    return how;
  }

  async removeUser(name: string): Promise<boolean> {
    let found = false;
    await this.edit<UserEntry>(usersKey(), 'users', (items) => {
      const rest = items.filter((u) => u.name !== name);
      found = rest.length !== items.length;
      return found ? rest : null;
    });
    return found;
  }

  /**
   * Read, change and write back one record with a conditional write; on a conflict (another
   * editor won) read again and re-apply. `change` returns null for "nothing to write".
   */
  private async edit<T>(key: string, field: string, change: (items: T[]) => T[] | null): Promise<void> {
    for (let i = 0; i < EDIT_TRIES; i++) {
      const cur = await this.driver.readVersioned(key);
      const state = this.parse<T>(cur, { items: [], sig: '' }, field, true);
      const items = change([...state.items]);
      if (!items) return;
      const body = Buffer.from(`${JSON.stringify({ [field]: items }, null, 2)}\n`);
      const done = cur ? await this.driver.replaceIf(key, body, cur.version) : await this.driver.createIfAbsent(key, body);
      if (done) return this.refresh(true);
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 5 * (i + 1)))); // apart, so the next round has a winner
    }
    throw new Error(`${key} kept changing while it was being edited (${EDIT_TRIES} tries); try again`);
  }
}
