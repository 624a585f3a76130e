// S3-compatible object store driver (AWS S3, Ceph RGW, MinIO, R2, …), on AWS SDK v3: the
// maintained client, which signs (SigV4) and retries; multipart uploads are ours (s3-multipart.ts).
// Keys are the same as on disk (ollama's layout) under an optional prefix, so a bucket synced to
// a folder is an ollama models folder. Checksums are WHEN_REQUIRED: Ceph and Swift refuse the
// SDK's default aws-chunked uploads (README, "When one machine is not enough").
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import {
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command,
  PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { ByteRange, Driver, Entry, PendingWrite, Stat, Versioned } from './driver.js';
import { s3Client, s3Status, storeCall, type S3ClientOptions } from './s3-client.js';
import { readSmall, TooLarge } from '../upstream/common.js';
import { redirectAllowed } from './s3-redirect.js';
import { multipartWrite, sweepMultipart, type MultipartContext } from './s3-multipart.js';

export interface S3Options extends S3ClientOptions {
  /** The endpoint the registry writes to (none: AWS's, from the region). */
  endpoint?: string;
  bucket: string;
  region?: string;
  /** Key prefix inside the bucket ('' or e.g. 'models'), without a trailing '/'. */
  prefix?: string;
  /** Path-style URLs (http://host/bucket/key, the default), as Ceph and MinIO usually need; false: virtual-host (http://bucket.host/key). */
  forcePathStyle?: boolean;
  /** The endpoint clients reach for presigned URLs, when it differs from `endpoint`. */
  redirectEndpoint?: string;
  /** Opt-in: blob GETs may be answered with a redirect to a presigned URL (redirectUrl), where ollama's clients follow it. */
  redirect?: boolean;
  /** How long a redirect's presigned URL lives (default PRESIGN_TTL_SECONDS). */
  redirectTtlSeconds?: number;
}

/** The largest object readAll/readVersioned take whole (manifests and the registry's own records). */
const MAX_RECORD = 64 << 20;

/** How long a presigned URL lives by default: a day, longer than the slowest pull. */
export const PRESIGN_TTL_SECONDS = 24 * 3600;

function isMissing(e: unknown): boolean {
  const name = (e as { name?: string }).name;
  return s3Status(e) === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

function enoent(key: string, cause: unknown): Error {
  return Object.assign(new Error(`s3 driver: no such key ${key}`, { cause }), { code: 'ENOENT' });
}

/** Ceph 16 compares If-Match against the ETag without its quotes. */
const bare = (etag: string | undefined): string => (etag ?? '').replace(/^"|"$/g, '');

export class S3Driver implements Driver {
  readonly description: string;
  /** ListObjectsV2 requests made (each page counts): what gc costs on a store that bills LISTs. */
  listCalls = 0;
  private readonly s3: S3Client;
  private readonly signer: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipart: MultipartContext;
  private readonly redirect: boolean;
  private readonly redirectTtlSeconds: number;
  private readonly deadlineMs: number;
  /** redirectAllowed's verdicts by registry origin and store origin, for a minute (they change only with DNS). */
  private readonly verdicts = new Map<string, { at: number; ok: boolean }>();

  constructor(o: S3Options) {
    this.bucket = o.bucket;
    this.prefix = o.prefix ? `${o.prefix.replace(/^\/+|\/+$/g, '')}/` : '';
    this.s3 = s3Client(o, o.endpoint);
    // SigV4 signs the host: URLs for clients are signed for the host clients reach.
    this.signer = o.redirectEndpoint ? s3Client(o, o.redirectEndpoint) : this.s3;
    this.description = `s3 bucket ${o.bucket}${o.prefix ? `/${o.prefix}` : ''}${o.endpoint ? ` at ${o.endpoint}` : ''}`;
    this.redirect = o.redirect ?? false;
    this.redirectTtlSeconds = o.redirectTtlSeconds ?? PRESIGN_TTL_SECONDS;
    this.deadlineMs = o.timeouts?.deadlineMs ?? 30_000;
    this.multipart = { s3: this.s3, bucket: this.bucket, description: this.description, prefix: this.prefix, objectKey: (k) => this.k(k), driver: this };
  }

  /**
   * Every request goes through here: it has `deadlineMs` for all its attempts (until the response
   * headers), and an outage becomes STORE_UNAVAILABLE; anything else stays as the SDK threw it.
   */
  private send<T>(request: (o: { abortSignal?: AbortSignal }) => Promise<T>): Promise<T> {
    return storeCall(this.description, request, this.deadlineMs);
  }

  private k(key: string): string {
    for (const p of key.split('/')) {
      if (p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0')) {
        throw new Error(`s3 driver: refusing storage key ${JSON.stringify(key)}`);
      }
    }
    return this.prefix + key;
  }

  async stat(key: string): Promise<Stat | null> {
    try {
      const h = await this.send((o) => this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), o));
      return { size: h.ContentLength ?? 0, mtimeMs: h.LastModified?.getTime() ?? 0 };
    } catch (e) {
      if (isMissing(e)) return null;
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    try {
      const r = await this.send((o) => this.s3.send(new GetObjectCommand({
        Bucket: this.bucket, Key: this.k(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }), o));
      // A store that dies mid-body ends it with an error; a frozen one, after the socket's idle timeout.
      return r.Body as Readable;
    } catch (e) {
      if (isMissing(e)) throw enoent(key, e);
      throw e;
    }
  }

  async copyTo(key: string, out: Writable, range?: ByteRange): Promise<void> {
    const { pipeline } = await import('node:stream/promises');
    await pipeline(await this.read(key, range), out);
  }

  async readAll(key: string): Promise<Buffer> {
    return (await this.readVersionedOrThrow(key)).body;
  }

  async write(key: string, body: Readable | Buffer): Promise<{ size: number }> {
    if (Buffer.isBuffer(body)) {
      await this.send((o) => this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: body }), o));
      return { size: body.length };
    }
    const w = await this.create(key);
    const { pipeline } = await import('node:stream/promises');
    try {
      await pipeline(body, w.stream);
    } catch (e) {
      await w.cancel();
      throw e;
    }
    return w.commit();
  }

  async delete(key: string): Promise<void> {
    await this.send((o) => this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), o));
  }

  async list(prefix: string): Promise<string[]> {
    const base = prefix === '' ? this.prefix : `${this.k(prefix)}/`;
    const names = new Set<string>();
    let token: string | undefined;
    do {
      this.listCalls++;
      const r = await this.send((o) => this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, Delimiter: '/', ContinuationToken: token }), o));
      for (const c of r.CommonPrefixes ?? []) names.add(c.Prefix!.slice(base.length).replace(/\/$/, ''));
      for (const o of r.Contents ?? []) names.add(o.Key!.slice(base.length));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return [...names].filter((n) => n !== '').sort();
  }

  async putFile(localPath: string, key: string): Promise<{ how: 'copied' }> {
    await this.write(key, createReadStream(localPath, { highWaterMark: 1 << 20 }));
    await unlink(localPath).catch(() => {});
    return { how: 'copied' };
  }

  async create(key: string): Promise<PendingWrite> {
    return multipartWrite(this.multipart, key);
  }

  /**
   * Aborts the multipart uploads this registry started (on any replica) whose writer has been
   * silent for `maxAgeMs`, e.g. a replica killed mid-push. Returns how many it cleared.
   */
  sweepAbandonedUploads(maxAgeMs: number, now = Date.now()): Promise<number> {
    return sweepMultipart(this.multipart, maxAgeMs, now);
  }

  /** gc's call: multipart uploads whose writer has been silent past the stale limit are aborted. */
  async sweep(opts: { graceMs: number; staleMs: number; dryRun?: boolean }): Promise<{ removed: string[]; bytes: number }> {
    if (opts.dryRun) return { removed: [], bytes: 0 };
    const n = await this.sweepAbandonedUploads(opts.staleMs);
    return { removed: n > 0 ? [`${n} abandoned multipart upload(s)`] : [], bytes: 0 };
  }

  async *entries(prefix: string): AsyncIterable<Entry> {
    const base = prefix === '' ? this.prefix : `${this.k(prefix)}/`;
    let token: string | undefined;
    do {
      this.listCalls++;
      const r = await this.send((o) => this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }), o));
      for (const o of r.Contents ?? []) {
        yield { key: o.Key!.slice(this.prefix.length), size: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0 };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  private async readVersionedOrThrow(key: string): Promise<Versioned> {
    const v = await this.readVersioned(key);
    if (!v) throw enoent(key, null);
    return v;
  }

  async readVersioned(key: string): Promise<Versioned | null> {
    try {
      const r = await this.send((o) => this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), o));
      const body = r.Body as Readable;
      if ((r.ContentLength ?? 0) > MAX_RECORD) {
        body.destroy();
        throw new TooLarge(MAX_RECORD);
      }
      // The store is not trusted either: the cap holds while reading, whatever it announced.
      return { body: await storeCall(this.description, () => readSmall({ body }, MAX_RECORD)), version: bare(r.ETag) };
    } catch (e) {
      if (isMissing(e)) return null;
      if (e instanceof TooLarge) throw new Error(`s3 driver: ${key} is larger than ${MAX_RECORD >> 20} MiB, too large to read whole`, { cause: e });
      throw e;
    }
  }

  private async putIf(key: string, body: Buffer, cond: { IfNoneMatch?: string; IfMatch?: string }): Promise<string | null> {
    try {
      const r = await this.send((o) => this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: body, ...cond }), o));
      return bare(r.ETag);
    } catch (e) {
      // 412: the condition failed; 409: a concurrent conditional write won; 404: If-Match on an absent key.
      if ([412, 409, 404].includes(s3Status(e) ?? 0)) return null;
      throw e;
    }
  }

  createIfAbsent(key: string, body: Buffer): Promise<string | null> {
    return this.putIf(key, body, { IfNoneMatch: '*' });
  }

  replaceIf(key: string, body: Buffer, version: string): Promise<string | null> {
    return this.putIf(key, body, { IfMatch: version });
  }

  async deleteIf(key: string, version: string): Promise<boolean> {
    // Ceph 16 ignores If-Match on DELETE, so compare first; leases never rely on this (they expire).
    const cur = await this.readVersioned(key);
    if (!cur || cur.version !== version) return false;
    try {
      await this.send((o) => this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key), IfMatch: version }), o));
      return true;
    } catch (e) {
      if (s3Status(e) === 412) return false;
      throw e;
    }
  }

  /**
   * A GET URL for `key` on the redirect endpoint, valid `ttlSeconds` (at most 7 days, SigV4's
   * limit). ollama reuses one URL for a whole blob, so give it longer than the slowest pull
   * (PRESIGN_TTL_SECONDS). `signedAt` is for tests (an already expired URL).
   */
  presign(key: string, ttlSeconds = PRESIGN_TTL_SECONDS, signedAt?: Date): Promise<string> {
    const expiresIn = Math.max(1, Math.min(Math.floor(ttlSeconds), 7 * 24 * 3600));
    return getSignedUrl(this.signer, new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { expiresIn, signingDate: signedAt });
  }

  /**
   * Where to redirect a client that asked `registryUrl` for the blob at `key`: a presigned URL when
   * redirect mode is on and ollama's clients would follow it there, else null (stream the bytes).
   * `registryUrl` must be the registry's address as the client used it (scheme and host).
   */
  async redirectUrl(key: string, registryUrl: string, ttlSeconds = this.redirectTtlSeconds): Promise<string | null> {
    if (!this.redirect) return null;
    const url = await this.presign(key, ttlSeconds);
    const cacheKey = `${new URL(registryUrl).origin} ${new URL(url).origin}`;
    let v = this.verdicts.get(cacheKey);
    if (!v || Date.now() - v.at > 60_000) {
      if (this.verdicts.size >= 256) this.verdicts.clear(); // Host headers are the client's: keep the map small
      v = { at: Date.now(), ok: (await redirectAllowed(url, registryUrl)).ok };
      this.verdicts.set(cacheKey, v);
    }
    return v.ok ? url : null;
  }

  destroy(): void {
    this.s3.destroy();
    if (this.signer !== this.s3) this.signer.destroy();
  }
}
