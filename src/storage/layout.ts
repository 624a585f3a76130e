// Every storage key the registry uses is built here and nowhere else. Keys are relative,
// '/'-separated paths inside the data folder, laid out exactly as ollama lays out its
// models folder so the data folder *is* an ollama models folder:
//
//   blobs/sha256-<64 hex>                         verified blob (layer or config)
//   manifests/<host>/<namespace>/<model>/<tag>    manifest bytes exactly as received
//   .ollama-registry/                             the registry's own state:
//     tmp/<pid>-<random>                          staging for atomic writes (removed at start-up
//                                                 when the owning process is gone)
//     uploads/<id>/info.json                      push session: repository, times, commit marker (its bytes
//                                                 are in the receiving process's scratch folder: uploads/<id>)
//     keys.json, users.json                       who may pull/push/delete (0600; see src/auth/store.ts)
//     token-secret                                HMAC key of issued tokens and signed URLs (0600)
//     used-nonces                                 nonces as older versions kept them (migrated once)
//     id_ed25519                                  the registry's own key for signing in to upstreams (0600)
//     leases/gc                                   who runs gc now (one at a time)
//     leases/fill-sha256-<hex>                    who runs the fill of a blob (src/storage/lease.ts);
//                                                 the fill's bytes are staged in the scratch folder
//     peer-secret                                 HMAC key of requests between processes (fill-peer.ts)
//     fills/sha256-<hex>/...                      fills staged by older versions (gc sweeps them)
//     quarantine/sha256-<hex>                     blobs `verify` found corrupt (never served)
//     last-pulled/<host>.json, pins.json          last use of each tag, one record per host (merged
//                                                 on read; last-pulled.json of older versions is read too); tags kept from eviction
//     nonces/<sha256>                             used nonces of signed token requests (kept 10 minutes)
//     cas/<sha256 of a key>                       guard of one conditional write (fs driver only)
//     untagged/<host>/<ns>/<model>/sha256-<hex>   a manifest pushed by digest only (its bytes are
//                                                 the blob of that digest); the file marks which
//                                                 repository holds it, its mtime when
//
// Each function re-checks its inputs, so a bug elsewhere cannot turn a name into a path
// outside the data folder.
import { createHash, randomBytes } from 'node:crypto';
import { checkPart, digestHex } from '../names.js';

export const BLOBS = 'blobs';
export const MANIFESTS = 'manifests';
export const STATE = '.ollama-registry';

export function blobKey(digest: string): string {
  return `${BLOBS}/sha256-${digestHex(digest)}`;
}

export function manifestKey(host: string, namespace: string, model: string, tag: string): string {
  return `${MANIFESTS}/${checkPart('host', host)}/${checkPart('namespace', namespace)}/${checkPart('model', model)}/${checkPart('tag', tag)}`;
}

export const UNTAGGED = `${STATE}/untagged`;

/** Marker of a manifest stored by digest only in one repository. */
export function untaggedKey(host: string, namespace: string, model: string, digest: string): string {
  return `${untaggedDir(host, namespace, model)}/sha256-${digestHex(digest)}`;
}

/** One level of the untagged tree, as manifestDir is of the manifests tree. */
export function untaggedDir(...parts: [host?: string, namespace?: string, model?: string]): string {
  const kinds = ['host', 'namespace', 'model'] as const;
  return [UNTAGGED, ...parts.map((p, i) => checkPart(kinds[i]!, p!))].join('/');
}

/** The folder (key prefix) that holds one level of the manifests tree. */
export function manifestDir(...parts: [host?: string, namespace?: string, model?: string]): string {
  const kinds = ['host', 'namespace', 'model'] as const;
  return [MANIFESTS, ...parts.map((p, i) => checkPart(kinds[i]!, p!))].join('/');
}

/**
 * A key in the manifests tree as found on disk, including folder names the registry would not
 * serve: gc and verify must see every reference. Parts must still be single, safe segments.
 */
export function manifestTreeKey(...parts: string[]): string {
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..' || /[/\\\0]/.test(p)) throw new Error(`layout: bad manifests tree part ${JSON.stringify(p)}`);
  }
  return [MANIFESTS, ...parts].join('/');
}

// State key parts: no '/', and never '.' first, so never '..'.
const TOKEN_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function checkToken(t: string): string {
  if (!TOKEN_RE.test(t)) throw new Error(`layout: bad state key part ${JSON.stringify(t)}`);
  return t;
}

export function tmpDir(): string {
  return `${STATE}/tmp`;
}

export function tmpKey(name: string): string {
  return `${tmpDir()}/${checkToken(name)}`;
}

/** A fresh staging key for this process; the pid prefix lets start-up cleanup find orphans. */
export function stagingKey(): string {
  return tmpKey(`${process.pid}-${randomBytes(8).toString('hex')}`);
}

export function uploadsDir(): string {
  return `${STATE}/uploads`;
}

export function uploadDir(id: string): string {
  return `${uploadsDir()}/${checkToken(id)}`;
}

export function uploadInfoKey(id: string): string {
  return `${uploadDir(id)}/info.json`;
}

export function uploadDataKey(id: string): string {
  return `${uploadDir(id)}/data`;
}

export function fillsDir(): string {
  return `${STATE}/fills`;
}

/** The lease of one blob's fill: who fills it and where it can be read meanwhile. */
export function fillLeaseKey(digest: string): string {
  return `${STATE}/leases/fill-sha256-${digestHex(digest)}`;
}

/** The lease of gc: one gc at a time among the processes sharing the store. */
export function gcLeaseKey(): string {
  return `${STATE}/leases/gc`;
}

/** The secret that processes sharing this store sign their requests to each other with. */
export function peerSecretKey(): string {
  return stateKey('peer-secret');
}

export function quarantineKey(digest: string): string {
  return `${STATE}/quarantine/sha256-${digestHex(digest)}`;
}

/** A file of the registry's own state, e.g. stateKey('keys.json'). */
export function stateKey(...parts: string[]): string {
  return [STATE, ...parts.map(checkToken)].join('/');
}

/** Last-pull times, one record per owner (a host; see registry/housekeeping/usage.ts). */
export function lastPulledDir(): string {
  return stateKey('last-pulled');
}

export function lastPulledKey(owner: string): string {
  return `${lastPulledDir()}/${checkToken(`${owner}.json`)}`;
}

export function keysKey(): string {
  return stateKey('keys.json');
}

export function usersKey(): string {
  return stateKey('users.json');
}

/** The file of used nonces older versions kept (read once and removed, see src/auth/nonces.ts). */
export function noncesKey(): string {
  return stateKey('used-nonces');
}

/** Where a nonce of a signed token request is recorded as used (one record each; see src/auth/nonces.ts). */
export function usedNonceDir(): string {
  return stateKey('nonces');
}

export function usedNonceKey(hash: string): string {
  return `${usedNonceDir()}/${checkToken(hash)}`;
}

export function tokenSecretKey(): string {
  return stateKey('token-secret');
}

/** The registry's own ed25519 key (OpenSSH format), for signing in to upstreams as ollama does. */
export function ownKeyKey(): string {
  return stateKey('id_ed25519');
}

/** The guard file that serialises conditional writes to one key on a filesystem. */
export function casGuardKey(key: string): string {
  return stateKey('cas', createHash('sha256').update(key).digest('hex'));
}
