// Reading another process's fill across machines: the owner answers
// `GET /_internal/fills/sha256-<hex>` with its progress (JSON) and, with a Range, the bytes it
// already has from that offset on (never more, never the last byte: that one is served from the
// published blob, after the owner checked the digest). Requests are signed with an HMAC whose
// key every process sharing the store reads from it (peer-secret); unsigned, badly signed or
// expired requests get 401, and a process answers only for a fill it runs under its lease.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { RegistryError } from '../../errors.js';
import { digestHex } from '../../names.js';
import type { Driver } from '../../storage/driver.js';
import { peerSecretKey } from '../../storage/layout.js';
import type { BlobStore } from '../blobs/blobs.js';
import { copyFill, type ReadableFill } from './fill-reader.js';
import { validState, type FillState } from './fill-scratch.js';

export const FILL_PEER_PATH = '/_internal/fills/';
export const PEER_HEADER = 'x-ollama-registry-peer';
const SIGNATURE_TTL_S = 60; // a signature is good for this long (clocks of one cluster agree to seconds)
const STATE_MAX_BYTES = 4 << 20;
const REQUEST_TIMEOUT_MS = 15_000; // connect, headers, and every pause in a body

const secrets = new WeakMap<Driver, Promise<Buffer>>();

/** The HMAC key shared through the store, made by whichever process needs it first. */
export function peerSecret(driver: Driver): Promise<Buffer> {
  let p = secrets.get(driver);
  if (!p) {
    p = (async () => {
      const key = peerSecretKey();
      if (!(await driver.readVersioned(key))) await driver.createIfAbsent(key, Buffer.from(randomBytes(32).toString('hex')));
      const hex = (await driver.readAll(key)).toString('utf8').trim();
      if (!/^[0-9a-f]{64}$/.test(hex)) throw new RegistryError('INTERNAL', `${key} in ${driver.description} is not 64 hex characters; delete it to make a new one`);
      return Buffer.from(hex, 'hex');
    })();
    p.catch(() => secrets.delete(driver));
    secrets.set(driver, p);
  }
  return p;
}

function mac(secret: Buffer, method: string, pathname: string, range: string, expires: number): Buffer {
  return createHmac('sha256', secret).update(`${method}\n${pathname}\n${range}\n${expires}`).digest();
}

/**
 * The header value that signs one request for `pathname` (with that Range header, or none; an
 * upload forwarded to its owner signs its path with the query, and its Content-Range).
 */
export function signPeerRequest(secret: Buffer, pathname: string, range = '', now = Date.now(), method = 'GET'): string {
  const expires = Math.floor(now / 1000) + SIGNATURE_TTL_S;
  return `${expires}.${mac(secret, method, pathname, range, expires).toString('hex')}`;
}

/** UNAUTHORIZED unless the request carries signPeerRequest's signature of its method, `pathname` and `range`. */
export function checkPeerSignature(secret: Buffer, req: IncomingMessage, pathname: string, range = req.headers.range ?? ''): void {
  const value = req.headers[PEER_HEADER];
  const m = typeof value === 'string' ? /^(\d{1,12})\.([0-9a-f]{64})$/.exec(value) : null;
  const refuse = (why: string) => new RegistryError('UNAUTHORIZED', `internal endpoint: ${why}`);
  if (!m) throw refuse('this request needs the signature of a registry process sharing this store');
  const expires = Number(m[1]);
  const now = Date.now() / 1000;
  if (expires < now || expires > now + 2 * SIGNATURE_TTL_S) throw refuse('the signature has expired (or its clock is far off)');
  const want = mac(secret, req.method ?? '', pathname, range, expires);
  if (!timingSafeEqual(want, Buffer.from(m[2]!, 'hex'))) throw refuse('the signature does not match');
}

/** What the endpoint needs from the fills of this process. */
export interface OwnedFills {
  /** A fill this process runs now under its lease, or undefined. */
  owned(digest: string): (ReadableFill & { state(): FillState }) | undefined;
}

/** Answer one peer request (registered in src/http/server.ts under FILL_PEER_PATH). */
export async function serveFillPeer(req: IncomingMessage, res: ServerResponse, pathname: string, deps: { driver: Driver; blobs: BlobStore; fills?: OwnedFills }): Promise<void> {
  if (req.method !== 'GET') throw new RegistryError('UNSUPPORTED', `${req.method} is not supported on this endpoint (allowed: GET)`, { headers: { Allow: 'GET' } });
  checkPeerSignature(await peerSecret(deps.driver), req, pathname);
  const m = /^sha256-([0-9a-f]{64})$/.exec(pathname.slice(FILL_PEER_PATH.length));
  if (!m) throw new RegistryError('NOT_FOUND', `no such endpoint: ${pathname.slice(0, 100)}`);
  const digest = `sha256:${m[1]}`;
  const fill = deps.fills?.owned(digest);
  if (!fill) throw new RegistryError('BLOB_UNKNOWN', `this process is not filling ${digest}`);
  res.setHeader('Cache-Control', 'no-store');
  const range = req.headers.range;
  if (range === undefined) {
    const body = Buffer.from(JSON.stringify(fill.state()));
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    res.end(body);
    return;
  }
  const r = /^bytes=(\d{1,16})-(\d{1,16})$/.exec(range);
  const start = r ? Number(r[1]) : NaN;
  const avail = Math.min(fill.readableEnd(start), r ? Number(r[2]) + 1 : 0, fill.size - 1);
  if (!r || !(avail > start)) {
    if (r && start < fill.size) fill.want(start); // a follower's reader waits there: fetch it next (splits a lane)
    throw new RegistryError('RANGE_INVALID', `bytes from ${r ? start : '?'} of ${digest} are not here yet (ask for bytes=START-END inside what the state says)`,
      { headers: { 'Content-Range': `bytes */${fill.size}` } });
  }
  res.writeHead(206, { 'Content-Type': 'application/octet-stream', 'Content-Length': avail - start, 'Content-Range': `bytes ${start}-${avail - 1}/${fill.size}` });
  await copyFill(fill, deps.blobs, res, start, avail - 1);
}

/** Where a URL from a lease record may lead: http(s) only, no credentials in it. */
export function peerOrigin(url: string | undefined): string | null {
  if (!url || !URL.canParse(url)) return null;
  const u = new URL(url);
  return /^https?:$/.test(u.protocol) && !u.username && !u.password ? u.origin : null;
}

const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 16 }), https: new https.Agent({ keepAlive: true, maxSockets: 16 }) };

/** The client side: one owner's fill of one digest, read over its internal endpoint. */
export class PeerFill {
  private readonly pathname: string;

  constructor(private readonly origin: string, private readonly digest: string, private readonly secret: Buffer) {
    this.pathname = `${FILL_PEER_PATH}sha256-${digestHex(digest)}`;
  }

  /** The owner's progress; rejects when it cannot say (gone, refusing, or talking nonsense). */
  async state(): Promise<FillState> {
    const body = await this.get(undefined, STATE_MAX_BYTES, 200);
    const s = JSON.parse(body.toString('utf8')) as Partial<FillState>;
    if (!validState(s, this.digest)) throw new Error(`${this.origin}: not a fill state of ${this.digest}`);
    return s;
  }

  /** Ask the owner to bring byte `pos` soon (its answer, 416 or one byte, does not matter). */
  want(pos: number): void {
    const range = `bytes=${pos}-${pos}`;
    this.get(range, 1, 206, { pos, buf: Buffer.alloc(1) }).catch(() => {});
  }

  /** Up to `len` bytes at `pos` into `buf`; how many came. */
  async readAt(buf: Buffer, len: number, pos: number): Promise<number> {
    return (await this.get(`bytes=${pos}-${pos + len - 1}`, len, 206, { pos, buf })).length;
  }

  /** One signed GET; the body (at most `cap` bytes) into `into.buf` when given, else a new buffer. */
  private get(range: string | undefined, cap: number, status: number, into?: { pos: number; buf: Buffer }): Promise<Buffer> {
    const url = new URL(this.pathname, this.origin);
    const headers: Record<string, string> = { [PEER_HEADER]: signPeerRequest(this.secret, this.pathname, range) };
    if (range) headers.range = range;
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<Buffer>((resolve, reject) => {
      const req = lib.get(url, { headers, agent: url.protocol === 'https:' ? agents.https : agents.http, timeout: REQUEST_TIMEOUT_MS }, (res) => {
        const cr = /^bytes (\d+)-\d+\/\d+$/.exec(res.headers['content-range'] ?? '');
        if (res.statusCode !== status || (into && Number(cr?.[1]) !== into.pos)) {
          res.resume();
          reject(new Error(`${this.origin} answered ${res.statusCode} for ${this.pathname} ${range ?? ''}`));
          return;
        }
        let n = 0;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          if (n + c.length > cap) {
            req.destroy(new Error(`${this.origin} sent more than asked for ${this.pathname}`));
            return;
          }
          if (into) c.copy(into.buf, n);
          else chunks.push(c);
          n += c.length;
        });
        res.once('end', () => resolve(into ? into.buf.subarray(0, n) : Buffer.concat(chunks, n)));
        res.once('error', reject);
        res.once('aborted', () => reject(new Error(`${this.origin} broke off ${this.pathname}`)));
      });
      req.once('timeout', () => req.destroy(new Error(`${this.origin} did not answer in ${REQUEST_TIMEOUT_MS / 1000} s`)));
      req.once('error', reject);
    });
  }
}
