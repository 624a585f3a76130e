// ollama's registry request layer (server/images.go makeRequest, makeRequestWithRetry,
// parseRegistryChallenge/getValue; server/auth.go; auth/auth.go; protocol §2.2, §6): the
// ed25519 key, the signed token request, the 401 → token → retry-once rule.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import {
  discard, formatURL, goDo, goEncodeValues, goParseQuery, headerGet, parseURL, readAll, ErrNotExist,
  type CheckRedirect, type GoResponse, type GoURL, type ReqBody, type Transport,
} from './ollama-http.js';

export interface OllamaKey {
  privateKey: KeyObject;
  /** `ssh-ed25519 AAAA…`, as in ~/.ollama/id_ed25519.pub (no comment). */
  publicKeyLine: string;
  /** The base64 field of that line: SSH wire format `string "ssh-ed25519" ‖ string <32 bytes>`. */
  publicKeyB64: string;
}

/** A fresh ed25519 key pair, like the one `ollama serve` creates on first start. */
export function makeOllamaKey(): OllamaKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const sshString = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const publicKeyB64 = Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(raw)]).toString('base64');
  return { privateKey, publicKeyLine: `ssh-ed25519 ${publicKeyB64}`, publicKeyB64 };
}

/** base64(hex(sha256(""))): the constant third field of the signed token request. */
export const TOKEN_SIGNATURE_SUFFIX = Buffer.from(createHash('sha256').update('').digest('hex')).toString('base64');

/**
 * The `Authorization` value of a token request for `url` (the full token URL exactly as it is
 * requested): `<pubkey b64>:<base64 ed25519 signature of "GET,<url>,<constant>">`, no `Bearer`.
 */
export function signTokenRequest(key: OllamaKey, url: string): string {
  const sig = sign(null, Buffer.from(`GET,${url},${TOKEN_SIGNATURE_SUFFIX}`), key.privateKey);
  return `${key.publicKeyB64}:${sig.toString('base64')}`;
}

/** Go auth.NewNonce(rand.Reader, 16): base64url without padding, 22 characters. */
export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

export interface RegistryChallenge {
  realm: string;
  service: string;
  scope: string;
}

/**
 * ollama's naive `getValue`: finds `key=`, skips `key="`, and the value ends at the first `"`
 * that is followed by `,` or by the end of the header.
 */
export function getChallengeValue(header: string, key: string): string {
  let start = header.indexOf(`${key}=`);
  if (start === -1) return '';
  start += key.length + 2;
  let end = start;
  while (end < header.length) {
    if (header[end] === '"') {
      if (end + 1 < header.length && header[end + 1] !== ',') {
        end++;
        continue;
      }
      break;
    }
    end++;
  }
  return header.slice(start, end);
}

/** parseRegistryChallenge: strips a leading `Bearer ` (any other scheme is parsed just the same). */
export function parseRegistryChallenge(header: string): RegistryChallenge {
  const s = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : header;
  return { realm: getChallengeValue(s, 'realm'), service: getChallengeValue(s, 'service'), scope: getChallengeValue(s, 'scope') };
}

// ---- ollama: makeRequest, makeRequestWithRetry, getAuthorizationToken ----

/** Timing knobs. ollama's values are OLLAMA_TIMING; the default (TEST_TIMING) retries quickly. */
export interface OllamaTiming {
  /** Tries per part / commit (ollama: 6). */
  maxRetries: number;
  /** Sleep before retry `try` is `2^try × retryBaseMs` (ollama: 1000 ms). */
  retryBaseMs: number;
  /** How long the blob probe GET is retried (ollama: 30 s), with backoff min(n²·10 ms, 10 s)·U[0.5,1.5). */
  probeWindowMs: number;
  /** A download part that receives nothing for this long is restarted (ollama: 30 s). */
  stallTimeoutMs: number;
  /** Stall restarts allowed per part (ollama: unbounded). */
  maxStalls: number;
}

export const OLLAMA_TIMING: OllamaTiming = { maxRetries: 6, retryBaseMs: 1000, probeWindowMs: 30_000, stallTimeoutMs: 30_000, maxStalls: Infinity };
export const TEST_TIMING: OllamaTiming = { maxRetries: 6, retryBaseMs: 10, probeWindowMs: 3_000, stallTimeoutMs: 30_000, maxStalls: Infinity };

/** What one pull/push shares: the transport, the User-Agent, the key and timing. */
export interface ClientContext {
  transport: Transport;
  userAgent: string;
  key?: OllamaKey;
  timing: OllamaTiming;
}

/** ollama's registryOptions: the token lives here for the rest of the operation. */
export interface RegOpts {
  insecure: boolean;
  token: string;
  checkRedirect?: CheckRedirect;
}

/**
 * makeRequest: with `insecure`, rewrites the scheme of `url` to http *in place* (as Go does on
 * the shared *url.URL); sets Authorization from the token and the ollama User-Agent on `headers`
 * (mutated, like Go's req.Header = headers).
 */
export function makeRequest(
  ctx: ClientContext, method: string, url: GoURL, headers: Record<string, string> | null, body: ReqBody | undefined, regOpts: RegOpts | null, signal?: AbortSignal,
): Promise<GoResponse> {
  if (url.scheme !== 'http' && regOpts?.insecure) url.scheme = 'http';
  const h = headers ?? {};
  if (regOpts?.token) h.Authorization = `Bearer ${regOpts.token}`;
  h['User-Agent'] = ctx.userAgent;
  return goDo(ctx.transport, { method, url, headers: h, body }, { checkRedirect: regOpts?.checkRedirect, signal });
}

/** makeRequestWithRetry: 401 → token + one more try; 404 → ErrNotExist; ≥400 → `<code>: <body>`. */
export async function makeRequestWithRetry(
  ctx: ClientContext, method: string, url: GoURL, headers: Record<string, string> | null, body: ReqBody | undefined, regOpts: RegOpts, signal?: AbortSignal,
): Promise<GoResponse> {
  for (let i = 0; i < 2; i++) {
    const resp = await makeRequest(ctx, method, url, headers, body, regOpts, signal);
    if (resp.status === 401) {
      discard(resp);
      const challenge = parseRegistryChallenge(headerGet(resp, 'WWW-Authenticate'));
      regOpts.token = await getAuthorizationToken(ctx, challenge, url.host, signal);
    } else if (resp.status === 404) {
      discard(resp);
      throw new ErrNotExist();
    } else if (resp.status >= 400) {
      throw new Error(`${resp.status}: ${(await readAll(resp)).toString('utf8')}`);
    } else {
      return resp;
    }
  }
  throw new Error('unauthorized: access denied');
}

/** registryChallenge.URL(): realm + its own query + service, scope…, ts, nonce; Go-encoded. */
export function challengeURL(c: RegistryChallenge): GoURL {
  const u = parseURL(c.realm);
  const values = goParseQuery(u.rawQuery);
  values.push(['service', c.service]);
  for (const s of c.scope.split(' ')) values.push(['scope', s]);
  values.push(['ts', String(Math.floor(Date.now() / 1000))]);
  values.push(['nonce', newNonce()]);
  return { ...u, rawQuery: goEncodeValues(values) };
}

/** getAuthorizationToken: the ed25519-signed GET to the realm (never subject to --insecure). */
export async function getAuthorizationToken(ctx: ClientContext, challenge: RegistryChallenge, originalHost: string, signal?: AbortSignal): Promise<string> {
  const url = challengeURL(challenge);
  if (url.host !== originalHost) {
    throw new Error(`realm host ${JSON.stringify(url.host)} does not match original host ${JSON.stringify(originalHost)}`);
  }
  if (!ctx.key) throw new Error(`open ${path.join(os.homedir(), '.ollama', 'id_ed25519')}: no such file or directory`);
  const headers = { Authorization: signTokenRequest(ctx.key, formatURL(url)) };
  const resp = await makeRequest(ctx, 'GET', url, headers, undefined, { insecure: false, token: '' }, signal);
  const body = await readAll(resp);
  if (resp.status >= 400) throw new Error(body.length > 0 ? `${resp.status}: ${body.toString('utf8')}` : `${resp.status}`);
  const parsed: unknown = JSON.parse(body.toString('utf8'));
  const token = parsed && typeof parsed === 'object' ? (parsed as { token?: unknown }).token : undefined;
  return typeof token === 'string' ? token : '';
}
