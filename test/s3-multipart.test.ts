// Abandoned multipart uploads on the real Ceph: a writer killed mid-push leaves an upload (parts
// stored, object invisible) and its record; the registry's sweeper aborts it once the record is
// older than the limit (ListParts then says NoSuchUpload, or NoSuchKey on Ceph 16) and removes the record, without ever
// calling ListMultipartUploads. Young uploads are left alone and still commit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ListPartsCommand, S3Client } from '@aws-sdk/client-s3';
import { MULTIPART_RECORDS } from '../src/storage/s3-multipart.js';
import { S3Driver } from '../src/storage/s3.js';
import { newBucket, S3_CREDENTIALS, s3Endpoint } from './support/s3.js';

const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support/s3-writer.js');

async function recordsOf(d: S3Driver): Promise<Array<{ key: string; uploadId: string; name: string }>> {
  const out = [];
  for await (const e of d.entries(MULTIPART_RECORDS)) out.push({ ...JSON.parse((await d.readAll(e.key)).toString()), name: e.key });
  return out;
}

async function listParts(endpoint: string, bucket: string, key: string, uploadId: string): Promise<number | string> {
  const c = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_CREDENTIALS });
  try {
    return (await c.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))).Parts?.length ?? 0;
  } catch (e) {
    return (e as Error).name;
  } finally {
    c.destroy();
  }
}

test('s3: a writer killed mid-upload leaves an upload and a record; the sweeper aborts it and removes the record', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const bucket = await newBucket(endpoint);
  const d = new S3Driver({ endpoint, bucket, credentials: S3_CREDENTIALS });
  t.after(() => d.destroy());

  const writer = spawn(process.execPath, [WRITER, endpoint, bucket, 'blobs/sha256-abandoned'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => writer.kill('SIGKILL'));
  const [line] = await Promise.race([
    once(createInterface({ input: writer.stdout }), 'line'),
    once(writer, 'exit').then(([code]) => { throw new Error(`the writer exited (${code}) before starting`); }),
  ]);
  assert.equal(line, 'started');
  writer.kill('SIGKILL');
  await once(writer, 'exit');

  const [rec, ...more] = await recordsOf(d);
  assert.ok(rec && more.length === 0, 'one record for the one upload');
  assert.equal(rec.key, 'blobs/sha256-abandoned');
  const parts = await listParts(endpoint, bucket, rec.key, rec.uploadId);
  assert.ok(Number(parts) >= 1, `its parts are in the store (ListParts: ${parts})`);
  assert.equal(await d.stat('blobs/sha256-abandoned'), null, 'the object is not visible');

  // Younger than the limit: left alone.
  assert.equal(await d.sweepAbandonedUploads(3_600_000), 0);
  assert.equal((await recordsOf(d)).length, 1);
  // Older (as seen an hour later): aborted, and the record is gone.
  assert.equal(await d.sweepAbandonedUploads(3_600_000, Date.now() + 3_600_001), 1);
  // S3 says NoSuchUpload; Ceph 16 says NoSuchKey (404 both): the upload is gone either way.
  assert.match(String(await listParts(endpoint, bucket, rec.key, rec.uploadId)), /^NoSuch(Upload|Key)$/);
  assert.deepEqual(await recordsOf(d), []);
  assert.equal(await d.stat('blobs/sha256-abandoned'), null);
});

test('s3: the sweeper leaves a live upload that is younger than the limit, which then commits; it clears garbage records', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const bucket = await newBucket(endpoint);
  const d = new S3Driver({ endpoint, bucket, credentials: S3_CREDENTIALS, prefix: 'p' });
  t.after(() => d.destroy());
  const w = await d.create('blobs/sha256-live');
  const bytes = randomBytes(20 << 20);
  for (let i = 0; i < bytes.length; i += 1 << 20) {
    if (!w.stream.write(bytes.subarray(i, i + (1 << 20)))) await once(w.stream, 'drain');
  }
  // A record that names no upload of its own (corrupt, or planted): removed, nothing aborted.
  await d.write(`${MULTIPART_RECORDS}/${'0'.repeat(64)}`, Buffer.from('{"key":"p/blobs/x","uploadId":"not-this-one"}'));
  assert.equal(await d.sweepAbandonedUploads(0, Date.now() + 10_000) >= 1, true);
  // The live upload was swept too (limit 0): its commit fails cleanly and nothing appears.
  // Ceph answers the in-flight part of an aborted upload with NoSuchUpload or by closing the connection (then 503).
  await assert.rejects(w.commit(), /NoSuchUpload|upload|unavailable/i);
  assert.equal(await d.stat('blobs/sha256-live'), null);
  assert.deepEqual(await recordsOf(d), []);

  const w2 = await d.create('blobs/sha256-live2');
  for (let i = 0; i < bytes.length; i += 1 << 20) {
    if (!w2.stream.write(bytes.subarray(i, i + (1 << 20)))) await once(w2.stream, 'drain');
  }
  assert.equal(await d.sweepAbandonedUploads(3_600_000), 0);
  assert.deepEqual(await w2.commit(), { size: bytes.length });
  assert.deepEqual(await d.readAll('blobs/sha256-live2'), bytes);
  assert.deepEqual(await recordsOf(d), []);
});
