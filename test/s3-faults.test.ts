// The object store goes away: on a dedicated Ceph whose gateway is stopped (connections refused)
// or frozen (connections accepted, never answered), every S3 driver call fails with
// STORE_UNAVAILABLE (503, one line) instead of hanging; a write in progress never becomes
// visible; after the gateway is back, everything committed before is intact and the multipart
// upload the failed write left behind is swept. The cluster (bluestore) is then restarted whole,
// and what was committed is still intact.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { RegistryError } from '../src/errors.js';
import type { Driver, PendingWrite } from '../src/storage/driver.js';
import { MULTIPART_RECORDS } from '../src/storage/s3-multipart.js';
import { ownCeph, s3Driver } from './support/s3.js';

const MiB = 1 << 20;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function isOutage(e: unknown): boolean {
  assert.ok(e instanceof RegistryError, `expected a RegistryError, got ${(e as Error)?.stack ?? String(e)}`);
  assert.equal(e.code, 'STORE_UNAVAILABLE');
  assert.equal(e.status, 503);
  assert.doesNotMatch(e.message, /\n/);
  assert.match(e.message, /object store .* is unavailable/);
  return true;
}

/** Writes `bytes` into a pending write, honouring backpressure, so that every part before the last has been sent. */
async function feed(w: PendingWrite, bytes: Buffer): Promise<void> {
  for (let i = 0; i < bytes.length; i += MiB) {
    if (!w.stream.write(bytes.subarray(i, i + MiB))) await new Promise((r) => w.stream.once('drain', r));
  }
}

async function records(d: Driver): Promise<string[]> {
  const out: string[] = [];
  for await (const e of d.entries(MULTIPART_RECORDS)) out.push(e.key);
  return out;
}

test('s3 driver: a stopped or frozen store gives STORE_UNAVAILABLE fast; nothing half-written appears; committed data survives', async (t) => {
  const ceph = await ownCeph(t, 'bluestore');
  if (!ceph) return;
  const d = await s3Driver(ceph.endpoint, { prefix: 'models', timeouts: { connectMs: 2_000, idleMs: 2_000, responseMs: 5_000, attempts: 2 } });
  t.after(() => d.destroy());

  const small = Buffer.from('{"committed":true}');
  const big = randomBytes(20 * MiB);
  await d.write('manifests/a/b/c/latest', small);
  await d.write('blobs/sha256-big', Readable.from([big]));

  // A streamed write that already has parts in the store when the store goes away.
  const pending = await d.create('blobs/sha256-pending');
  await feed(pending, randomBytes(40 * MiB));
  assert.equal((await records(d)).length, 1, 'the multipart upload has its record');

  await ceph.stopGateway();
  await assert.rejects(pending.commit(), isOutage);
  await assert.rejects(d.stat('blobs/sha256-big'), isOutage);
  await assert.rejects(d.read('blobs/sha256-big'), isOutage);
  await assert.rejects(d.readAll('manifests/a/b/c/latest'), isOutage);
  await assert.rejects(d.write('manifests/a/b/c/other', Buffer.from('x')), isOutage);
  await assert.rejects(d.createIfAbsent('.ollama-registry/lease', Buffer.from('x')), isOutage);
  await assert.rejects(d.list('manifests'), isOutage);

  await ceph.startGateway();
  // Frozen: the gateway accepts connections and never answers; the idle timeout ends each attempt.
  // With a deadline shorter than the idle timeout, the deadline ends the request (all attempts).
  const impatient = await s3Driver(ceph.endpoint, { timeouts: { idleMs: 60_000, deadlineMs: 1_500 } });
  t.after(() => impatient.destroy());
  ceph.freezeGateway(true);
  try {
    await assert.rejects(d.stat('blobs/sha256-big'), isOutage);
    await assert.rejects(d.write('manifests/a/b/c/frozen', Buffer.from('whole')), isOutage);
    await assert.rejects(impatient.stat('blobs/x'), (e) => isOutage(e) && /no answer within 1\.5 s/.test((e as Error).message));
  } finally {
    ceph.freezeGateway(false);
  }

  // Back: nothing of the failed writes is visible, everything committed is whole.
  assert.equal(await d.stat('blobs/sha256-pending'), null);
  assert.equal(await d.stat('manifests/a/b/c/other'), null);
  // A request the frozen gateway had already received is carried out once it runs again: a timed-out
  // write has an unknown outcome (as on any S3), but it is whole or absent, never a part.
  const late = await d.stat('manifests/a/b/c/frozen');
  if (late) assert.equal((await d.readAll('manifests/a/b/c/frozen')).toString(), 'whole');
  assert.deepEqual(await d.readAll('manifests/a/b/c/latest'), small);
  assert.equal(sha(await readAll(await d.read('blobs/sha256-big'))), sha(big));
  // The aborted commit could not abort its upload while the store was down: its record stays
  // until the sweeper clears it.
  assert.equal((await records(d)).length, 1);
  assert.equal(await d.sweepAbandonedUploads(0), 1);
  assert.deepEqual(await records(d), []);

  // The whole cluster stopped and started again on its disk: everything committed is still whole.
  await ceph.restartAll();
  assert.deepEqual(await d.readAll('manifests/a/b/c/latest'), small);
  assert.equal(sha(await readAll(await d.read('blobs/sha256-big'))), sha(big));
  assert.equal(await d.stat('blobs/sha256-pending'), null);
});
