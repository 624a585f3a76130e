// Streamed writes to S3 as multipart uploads that nobody sees before commit, and the sweeper of
// abandoned ones. Each upload the registry starts leaves a small record in the bucket (keyed by
// a hash of its upload id, with the object key); commit and cancel remove it. A writer that dies
// leaves its record, and `sweepMultipart` aborts every upload whose record is older than a limit.
// It lists only those records, never ListMultipartUploads, which several S3-compatible stores
// answer incompletely.
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand,
  type CompletedPart, type S3Client,
} from '@aws-sdk/client-s3';
import type { Driver, PendingWrite } from './driver.js';
import { STATE } from './layout.js';
import { s3ErrorName, s3Status, storeCall } from './s3-client.js';

/** Where the records live (driver keys, under the driver's prefix). */
export const MULTIPART_RECORDS = `${STATE}/multipart`;
/** Part size; it grows every 1000 parts so that S3's limit of 10000 parts holds objects of up to ~880 GB. */
export const PART = 16 << 20;
const CONCURRENCY = 2;
/** A long upload rewrites its record this often, so the sweeper judges it by its last activity. */
const TOUCH_MS = 3_600_000;

export function partSize(partsSoFar: number): number {
  return PART * (1 + Math.floor(partsSoFar / 1000));
}

export interface MultipartContext {
  s3: S3Client;
  bucket: string;
  /** For messages: which store. */
  description: string;
  /** The key prefix inside the bucket ('' or ending in '/'). */
  prefix: string;
  /** The driver key → the object's key in the bucket (prefix added, key checked). */
  objectKey(key: string): string;
  /** The driver itself, for the records (small writes, listing, deletes). */
  driver: Driver;
}

interface UploadRecord {
  key: string;
  uploadId: string;
  started: number;
}

function recordKey(uploadId: string): string {
  return `${MULTIPART_RECORDS}/${createHash('sha256').update(uploadId).digest('hex')}`;
}

function abortUpload(ctx: MultipartContext, key: string, uploadId: string): Promise<unknown> {
  return storeCall(ctx.description, () => ctx.s3.send(new AbortMultipartUploadCommand({ Bucket: ctx.bucket, Key: key, UploadId: uploadId })));
}

/** A PendingWrite that goes up in parts once it outgrows one part; smaller objects are one PUT at commit. */
export function multipartWrite(ctx: MultipartContext, key: string): PendingWrite {
  const objectKey = ctx.objectKey(key);
  let chunks: Buffer[] = [];
  let buffered = 0;
  let size = 0;
  let upload: { id: string; record: string; touched: number } | undefined;
  const parts: CompletedPart[] = [];
  let nextPart = 1;
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  let state: 'open' | 'closed' = 'open';

  const take = (): Buffer => {
    const b = Buffer.concat(chunks, buffered);
    chunks = [];
    buffered = 0;
    return b;
  };

  async function start(): Promise<{ id: string; record: string; touched: number }> {
    const r = await storeCall(ctx.description, () => ctx.s3.send(new CreateMultipartUploadCommand({ Bucket: ctx.bucket, Key: objectKey })));
    if (!r.UploadId) throw new Error(`s3 driver: the store gave no upload id for ${key}`);
    const u = { id: r.UploadId, record: recordKey(r.UploadId), touched: Date.now() };
    const body: UploadRecord = { key: objectKey, uploadId: u.id, started: u.touched };
    try {
      await ctx.driver.write(u.record, Buffer.from(JSON.stringify(body)));
    } catch (e) {
      await abortUpload(ctx, objectKey, u.id).catch(() => {});
      throw e;
    }
    return u;
  }

  async function drain(limit: number): Promise<void> {
    while (inflight.size > limit) await Promise.race(inflight);
    if (failure) throw failure;
  }

  async function flush(body: Buffer): Promise<void> {
    upload ??= await start();
    const u = upload;
    await drain(CONCURRENCY - 1);
    if (Date.now() - u.touched > TOUCH_MS) {
      u.touched = Date.now();
      await ctx.driver.write(u.record, Buffer.from(JSON.stringify({ key: objectKey, uploadId: u.id, started: u.touched })));
    }
    const n = nextPart++;
    const p: Promise<void> = storeCall(ctx.description, () => ctx.s3.send(new UploadPartCommand({ Bucket: ctx.bucket, Key: objectKey, UploadId: u.id, PartNumber: n, Body: body })))
      .then((r) => void parts.push({ PartNumber: n, ETag: r.ETag }), (e: unknown) => void (failure ??= e))
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }

  async function discard(): Promise<void> {
    await drain(0).catch(() => {});
    if (!upload) return;
    // If the store is down the abort fails too; the record stays and the sweeper finishes the job.
    await abortUpload(ctx, objectKey, upload.id);
    await ctx.driver.delete(upload.record);
  }

  const stream = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      buffered += chunk.length;
      size += chunk.length;
      if (buffered < partSize(nextPart - 1)) return cb();
      flush(take()).then(() => cb(), cb);
    },
  });

  return {
    stream,
    async commit() {
      if (state !== 'open') throw new Error(`s3 driver: ${key} was already committed or cancelled`);
      state = 'closed';
      try {
        if (!stream.writableEnded) stream.end();
        await finished(stream);
        if (!upload) {
          await ctx.driver.write(key, take());
          return { size };
        }
        if (buffered) await flush(take());
        await drain(0);
        parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
        const u = upload;
        await storeCall(ctx.description, () => ctx.s3.send(new CompleteMultipartUploadCommand({ Bucket: ctx.bucket, Key: objectKey, UploadId: u.id, MultipartUpload: { Parts: parts } })));
      } catch (e) {
        await discard().catch(() => {});
        throw e;
      }
      // The object is in place; a record left behind only costs the sweeper a NoSuchUpload.
      await ctx.driver.delete(upload.record).catch(() => {});
      return { size };
    },
    async cancel() {
      if (state !== 'open') return;
      state = 'closed';
      stream.destroy();
      await discard().catch(() => {});
    },
  };
}

function parseRecord(body: Buffer, name: string): UploadRecord | null {
  try {
    const r = JSON.parse(body.toString()) as Partial<UploadRecord>;
    if (typeof r.key !== 'string' || typeof r.uploadId !== 'string' || recordKey(r.uploadId) !== name) return null;
    return { key: r.key, uploadId: r.uploadId, started: Number(r.started) };
  } catch {
    return null;
  }
}

/**
 * Aborts every multipart upload this registry started whose record was last written more than
 * `maxAgeMs` ago, and removes its record. Returns how many records it cleared.
 */
export async function sweepMultipart(ctx: MultipartContext, maxAgeMs: number, now = Date.now()): Promise<number> {
  let cleared = 0;
  for await (const e of ctx.driver.entries(MULTIPART_RECORDS)) {
    if (now - e.mtimeMs < maxAgeMs) continue;
    const body = await ctx.driver.readVersioned(e.key);
    if (!body) continue;
    const r = parseRecord(body.body, e.key);
    // A record that does not name its own upload is garbage (or hostile): only the record goes.
    if (r && r.key.startsWith(ctx.prefix)) {
      try {
        await abortUpload(ctx, r.key, r.uploadId);
      } catch (err) {
        if (s3ErrorName(err) !== 'NoSuchUpload' && s3Status(err) !== 404) throw err;
      }
    }
    await ctx.driver.delete(e.key);
    cleared++;
  }
  return cleared;
}
