// S3-compatible object store driver (AWS S3, Ceph RGW, MinIO, R2, …), on AWS SDK v3: the
// maintained client, which signs (SigV4), retries and does multipart uploads for us.
// Keys are the same as on disk (ollama's layout) under an optional prefix, so a bucket synced to
// a folder is an ollama models folder. Checksums are WHEN_REQUIRED: Ceph and Swift refuse the
// SDK's default aws-chunked uploads (see the README's S3 section).
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { PassThrough, Readable, type Writable } from 'node:stream';
import {
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command,
  PutObjectCommand, S3Client, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { ByteRange, Driver, Entry, PendingWrite, Stat, Versioned } from './driver.js';

export interface S3Options {
  endpoint?: string;
  bucket: string;
  region?: string;
  /** Key prefix inside the bucket ('' or e.g. 'models'), without a trailing '/'. */
  prefix?: string;
  /** Path-style URLs (http://host/bucket/key), as Ceph and MinIO usually need. */
  forcePathStyle?: boolean;
  /** Answer blob GETs with a 307 to a presigned URL (opt-in; see the README's S3 section). */
  redirect?: boolean;
  /** The endpoint clients reach for presigned URLs, when it differs from `endpoint`. */
  redirectEndpoint?: string;
  /** Explicit credentials; otherwise the SDK's usual chain (environment, shared files, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const PART = 16 << 20;

function clientConfig(o: S3Options, endpoint: string | undefined): S3ClientConfig {
  return {
    endpoint,
    region: o.region ?? 'us-east-1',
    forcePathStyle: o.forcePathStyle ?? true,
    credentials: o.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    // A dead store must fail fast; a slow read is bounded by the socket's idle time, not its length.
    requestHandler: { connectionTimeout: 5_000, socketTimeout: 60_000 },
  };
}

function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function isMissing(e: unknown): boolean {
  const name = (e as { name?: string }).name;
  return status(e) === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

function enoent(key: string, cause: unknown): Error {
  return Object.assign(new Error(`s3 driver: no such key ${key}`, { cause }), { code: 'ENOENT' });
}

/** Ceph 16 compares If-Match against the ETag without its quotes. */
const bare = (etag: string | undefined): string => (etag ?? '').replace(/^"|"$/g, '');

export class S3Driver implements Driver {
  readonly description: string;
  private readonly s3: S3Client;
  private readonly signer: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(o: S3Options) {
    this.bucket = o.bucket;
    this.prefix = o.prefix ? `${o.prefix.replace(/\/+$/, '')}/` : '';
    this.s3 = new S3Client(clientConfig(o, o.endpoint));
    // SigV4 signs the host: URLs for clients are signed for the host clients reach.
    this.signer = o.redirectEndpoint ? new S3Client(clientConfig(o, o.redirectEndpoint)) : this.s3;
    this.description = `s3 bucket ${o.bucket}${o.prefix ? `/${o.prefix}` : ''}${o.endpoint ? ` at ${o.endpoint}` : ''}`;
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
      const h = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key) }));
      return { size: h.ContentLength ?? 0, mtimeMs: h.LastModified?.getTime() ?? 0 };
    } catch (e) {
      if (isMissing(e)) return null;
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    try {
      const r = await this.s3.send(new GetObjectCommand({
        Bucket: this.bucket, Key: this.k(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }));
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
      await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: body }));
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
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key) }));
  }

  async list(prefix: string): Promise<string[]> {
    const base = prefix === '' ? this.prefix : `${this.k(prefix)}/`;
    const names = new Set<string>();
    let token: string | undefined;
    do {
      const r = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, Delimiter: '/', ContinuationToken: token }));
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
    const stream = new PassThrough({ highWaterMark: PART });
    const upload = new Upload({ client: this.s3, params: { Bucket: this.bucket, Key: this.k(key), Body: stream }, partSize: PART, queueSize: 4, leavePartsOnError: false });
    const done = upload.done();
    done.catch(() => {}); // awaited in commit; cancel() makes it reject
    let size = 0;
    stream.on('data', (c: Buffer) => (size += c.length));
    let state: 'open' | 'closed' = 'open';
    return {
      stream,
      async commit() {
        if (state !== 'open') throw new Error(`s3 driver: ${key} was already committed or cancelled`);
        state = 'closed';
        if (!stream.writableEnded) stream.end();
        await done;
        return { size };
      },
      async cancel() {
        if (state !== 'open') return;
        state = 'closed';
        await upload.abort().catch(() => {});
        stream.destroy();
      },
    };
  }

  async *entries(prefix: string): AsyncIterable<Entry> {
    const base = prefix === '' ? this.prefix : `${this.k(prefix)}/`;
    let token: string | undefined;
    do {
      const r = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }));
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
      const r = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }));
      return { body: Buffer.from(await r.Body!.transformToByteArray()), version: bare(r.ETag) };
    } catch (e) {
      if (isMissing(e)) return null;
      throw e;
    }
  }

  private async putIf(key: string, body: Buffer, cond: { IfNoneMatch?: string; IfMatch?: string }): Promise<string | null> {
    try {
      const r = await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: body, ...cond }));
      return bare(r.ETag);
    } catch (e) {
      // 412: the condition failed; 409: a concurrent conditional write won; 404: If-Match on an absent key.
      if ([412, 409, 404].includes(status(e) ?? 0)) return null;
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
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key), IfMatch: version }));
      return true;
    } catch (e) {
      if (status(e) === 412) return false;
      throw e;
    }
  }

  presign(key: string, ttlSeconds: number): Promise<string> {
    return getSignedUrl(this.signer, new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { expiresIn: ttlSeconds });
  }

  destroy(): void {
    this.s3.destroy();
    if (this.signer !== this.s3) this.signer.destroy();
  }
}
