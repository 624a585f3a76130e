// The registry's own ed25519 key, with which it signs in to upstreams exactly as an ollama
// machine does (protocol §6): an admin registers its `ssh-ed25519 AAAA…` line upstream (on
// ollama.com, or with `keys add` on a head-office ollama-registry). By default it lives in the
// store (.ollama-registry/id_ed25519, shared by every replica) and is made when the pull-through
// cache opens (ensureOwnKey); a configured file (e.g. an ollama's own
// /usr/share/ollama/.ollama/id_ed25519, already registered) is used as it is.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fingerprintOf, SIGNED_SUFFIX } from '../auth/sshkey.js';
import { formatPrivateKey, parsePrivateKey, publicKeyBlob } from '../auth/openssh.js';
import type { Config } from '../config.js';
import type { Driver } from '../storage/driver.js';
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
  /** The file, or the store key of the registry's own key (for messages). */
  file: string;
  /** The registry's own key in the store (made on first need): then `driver` is the store. */
  create: boolean;
  driver?: Driver;
  setting: string;
  /** Told when a new key was made (to log its public line once). */
  onCreate?: (k: OwnKey) => void;
}

/** The key an upstream signs in with: its own `key:`, else `upstreamKey`, else the registry's own in `driver`. */
export function keySourceFor(driver: Driver, config: Pick<Config, 'upstreamKey' | 'upstreams'>, up?: UpstreamConfig): KeySource {
  if (up?.key) return { file: up.key, create: false, setting: `upstreams[${config.upstreams.indexOf(up)}].key` };
  if (config.upstreamKey) return { file: config.upstreamKey, create: false, setting: 'upstreamKey' };
  return { file: ownKeyKey(), create: true, setting: "the registry's own key", driver };
}

/** The registry's own key from the store, made (once, by whichever process is first) when absent. */
export async function ensureOwnKey(driver: Driver): Promise<{ key: OwnKey; created: boolean }> {
  const read = (body: Buffer) => {
    try {
      return fromPrivate(ownKeyKey(), parsePrivateKey(body.toString('utf8')));
    } catch (e) {
      throw new Error(`the registry's own key ${ownKeyKey()} in ${driver.description} cannot be used: ${(e as Error).message}`, { cause: e });
    }
  };
  const cur = await driver.readVersioned(ownKeyKey());
  if (cur) return { key: read(cur.body), created: false };
  const { privateKey } = generateKeyPairSync('ed25519');
  // A conditional write: two processes starting at once end up with one key.
  if (await driver.createIfAbsent(ownKeyKey(), Buffer.from(formatPrivateKey(privateKey)))) return { key: fromPrivate(ownKeyKey(), privateKey), created: true };
  return { key: read(await driver.readAll(ownKeyKey())), created: false };
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

/** The key of a source: the registry's own (made on first need), or a configured file. */
export async function loadOwnKey(src: KeySource): Promise<{ key: OwnKey; created: boolean }> {
  if (src.create && src.driver) return ensureOwnKey(src.driver);
  return { key: readOwnKey(src.file, src.setting), created: false };
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
