// The registry's own ed25519 key, with which it signs in to upstreams exactly as an ollama
// machine does (protocol §6): an admin registers its `ssh-ed25519 AAAA…` line upstream (on
// ollama.com, or with `keys add` on a head-office ollama-registry). By default it lives in the
// data folder and is made on first need; a configured file (e.g. an ollama's own
// /usr/share/ollama/.ollama/id_ed25519, already registered) is used as it is.
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fingerprintOf, SIGNED_SUFFIX } from '../auth/sshkey.js';
import { formatPrivateKey, parsePrivateKey, publicKeyBlob } from '../auth/openssh.js';
import { keepOwner } from '../auth/store.js';
import type { Config } from '../config.js';
import { makeDirs, type FsDriver } from '../storage/fs.js';
import { ownKeyKey } from '../storage/layout.js';
import type { UpstreamConfig } from './config.js';

export interface OwnKey {
  file: string;
  privateKey: KeyObject;
  /** The base64 field of the public key line. */
  blob: string;
  /** `ssh-ed25519 AAAA…`, as in ollama's id_ed25519.pub. */
  line: string;
  fingerprint: string;
}

/** Where an upstream's key comes from; `setting` names the config key for error messages. */
export interface KeySource {
  file: string;
  /** Make the key when the file does not exist (the default key in the data folder). */
  create: boolean;
  setting: string;
  /** Told when a new key was made (to log its public line once). */
  onCreate?: (k: OwnKey) => void;
}

/** The key an upstream signs in with: its own `key:`, else `upstreamKey`, else the data folder's. */
export function keySourceFor(driver: FsDriver, config: Pick<Config, 'upstreamKey' | 'upstreams'>, up?: UpstreamConfig): KeySource {
  if (up?.key) return { file: up.key, create: false, setting: `upstreams[${config.upstreams.indexOf(up)}].key` };
  if (config.upstreamKey) return { file: config.upstreamKey, create: false, setting: 'upstreamKey' };
  return { file: driver.path(ownKeyKey()), create: true, setting: "the registry's own key" };
}

function fromPrivate(file: string, privateKey: KeyObject): OwnKey {
  const blob = publicKeyBlob(privateKey);
  return { file, privateKey, blob, line: `ssh-ed25519 ${blob}`, fingerprint: fingerprintOf(Buffer.from(blob, 'base64')) };
}

/** Read a key file; errors name the file and the setting it came from. */
export function readOwnKey(file: string, setting: string): OwnKey {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new Error(`${setting}: cannot read the key ${file}: ${why}`, { cause: e });
  }
  try {
    return fromPrivate(file, parsePrivateKey(text));
  } catch (e) {
    throw new Error(`${setting}: the key ${file} cannot be used: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Write a new key with mode 0600 without ever exposing a half-written file: written and synced
 * under a temporary name, then linked into place (which fails if another process won the race).
 */
function createKey(file: string): OwnKey {
  const dir = path.dirname(file);
  makeDirs(dir);
  const { privateKey } = generateKeyPairSync('ed25519');
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    keepOwner(fd, dir);
    writeSync(fd, formatPrivateKey(privateKey));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
  } finally {
    unlinkSync(tmp);
  }
  return fromPrivate(file, privateKey);
}

/** The key of a source, made first when the source allows it and there is none. */
export function loadOwnKey(src: KeySource): { key: OwnKey; created: boolean } {
  try {
    return { key: readOwnKey(src.file, src.setting), created: false };
  } catch (e) {
    if (!src.create || !/no such file$/.test((e as Error).message)) throw e;
  }
  try {
    return { key: createKey(src.file), created: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return { key: readOwnKey(src.file, src.setting), created: false };
    throw new Error(`${src.setting}: cannot create the key ${src.file}: ${(e as Error).message}`, { cause: e });
  }
}

/** ollama's `Authorization` for a token request: `<key base64>:<signature of GET,<url>,<constant>>`. */
export function signTokenUrl(key: OwnKey, url: string): string {
  return `${key.blob}:${sign(null, Buffer.from(`GET,${url},${SIGNED_SUFFIX}`), key.privateKey).toString('base64')}`;
}

/** Go's url.Values.Encode (keys sorted, QueryEscape), as ollama builds the token URL it signs. */
export function goEncodeQuery(pairs: Array<[string, string]>): string {
  const esc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/%20/g, '+');
  const keys = [...new Set(pairs.map(([k]) => k))].sort();
  return keys.flatMap((k) => pairs.filter(([p]) => p === k).map(([, v]) => `${esc(k)}=${esc(v)}`)).join('&');
}
