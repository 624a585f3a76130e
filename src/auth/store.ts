// Who may do what: machine keys (ollama's ed25519 keys) and users with passwords (for OCI tools),
// each with grants per namespace. Kept as two JSON files in .ollama-registry/ (0600), edited by the
// `keys` and `users` commands and re-read by a running server when they change (checked at most
// once a second, so a change takes effect without a restart and costs nothing per request).
import { closeSync, fchownSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseKeyBlob } from './sshkey.js';
import { makeDirs } from '../storage/fs.js';

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
  sig: string;
}

/**
 * When root edits the files (sudo ollama-registry keys add …), give them to the owner of the
 * state folder, so a server running as that user can still read them.
 */
export function keepOwner(fd: number, dir: string): void {
  if (process.getuid?.() !== 0) return;
  const st = statSync(dir);
  if (st.uid !== 0) fchownSync(fd, st.uid, st.gid);
}

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

  /** Paths of the two files (see storage/layout.ts). `onError` hears about files that no longer parse. */
  constructor(readonly keysFile: string, readonly usersFile: string, private readonly onError: (e: Error) => void = () => {}) {}

  /** Re-read the files when they changed; at most once a second unless forced. */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    this.keysState = this.reload(this.keysFile, this.keysState, 'keys', force);
    this.usersState = this.reload(this.usersFile, this.usersState, 'users', force);
    this.byBlob = new Map(this.keysState.items.map((k) => [k.key.split(' ')[1]!, k]));
  }

  private reload<T>(file: string, old: FileState<T>, field: string, strict: boolean): FileState<T> {
    let sig = 'absent';
    try {
      const st = statSync(file);
      sig = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      /* absent: nobody */
    }
    if (sig === old.sig) return old;
    if (sig === 'absent') return { items: [], sig };
    try {
      const doc = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const items = doc[field];
      if (!Array.isArray(items)) throw new Error(`"${field}" must be a list`);
      return { items: items as T[], sig };
    } catch (e) {
      const err = new Error(`${file}: ${(e as Error).message}`);
      if (strict) throw err;
      this.onError(err);
      return { ...old, sig };
    }
  }

  keys(): KeyEntry[] {
    this.refresh();
    return this.keysState.items;
  }

  users(): UserEntry[] {
    this.refresh();
    return this.usersState.items;
  }

  keyByBlob(blob: string): KeyEntry | undefined {
    this.refresh();
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
  putKey(entry: Omit<KeyEntry, 'added'>): 'added' | 'updated' {
    this.refresh(true);
    const items = [...this.keysState.items];
    const i = items.findIndex((k) => k.fingerprint === entry.fingerprint);
    if (i >= 0) items[i] = { ...items[i]!, grants: mergeGrants(items[i]!.grants, entry.grants), ...(entry.comment ? { comment: entry.comment } : {}) };
    else items.push({ ...entry, added: new Date().toISOString() });
    this.save(this.keysFile, { keys: items });
    return i >= 0 ? 'updated' : 'added';
  }

  /** Remove a key given as its line, its base64 or its fingerprint; false when unknown. */
  removeKey(what: string): KeyEntry | undefined {
    this.refresh(true);
    const parts = what.trim().split(/\s+/);
    const blob = parts[0] === 'ssh-ed25519' ? parts[1] : parts[0];
    const fp = blob && parseKeyBlob(blob)?.fingerprint;
    const target = what.trim().startsWith('SHA256:') ? what.trim() : fp;
    const gone = this.keysState.items.find((k) => k.fingerprint === target);
    if (!gone) return undefined;
    this.save(this.keysFile, { keys: this.keysState.items.filter((k) => k !== gone) });
    return gone;
  }

  putUser(entry: { name: string; password?: string; grants: Grant[] }): 'added' | 'updated' {
    this.refresh(true);
    const items = [...this.usersState.items];
    const i = items.findIndex((u) => u.name === entry.name);
    if (i >= 0) {
      items[i] = { ...items[i]!, grants: mergeGrants(items[i]!.grants, entry.grants), ...(entry.password ? { password: entry.password } : {}) };
    } else {
      if (!entry.password) throw new Error(`user ${entry.name} needs a password`);
      items.push({ name: entry.name, password: entry.password, grants: entry.grants, added: new Date().toISOString() });
    }
    this.save(this.usersFile, { users: items });
    return i >= 0 ? 'updated' : 'added';
  }

  removeUser(name: string): boolean {
    this.refresh(true);
    const rest = this.usersState.items.filter((u) => u.name !== name);
    if (rest.length === this.usersState.items.length) return false;
    this.save(this.usersFile, { users: rest });
    return true;
  }

  /** Atomic, private write: temp file (0600) in the same folder, fsync, rename. */
  private save(file: string, doc: unknown): void {
    makeDirs(path.dirname(file));
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      keepOwner(fd, path.dirname(file));
      writeSync(fd, `${JSON.stringify(doc, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, file);
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* gone */ }
      throw e;
    }
    this.refresh(true);
  }
}
