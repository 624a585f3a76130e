import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BATCH_BYTES, takeBatch, pooledBatches, type Batch } from '../src/registry/pull-through/batches.js';
import { RecentBytes, type Slices } from '../src/registry/pull-through/fill-reader.js';
import { IntervalSet } from '../src/registry/pull-through/intervals.js';

test('filled intervals merge, and answer runs, next starts and gaps', () => {
  const s = new IntervalSet();
  s.add(10, 20);
  s.add(30, 40);
  s.add(20, 25); // touches [10,20): merged
  assert.deepEqual(s.toJSON(), [[10, 25], [30, 40]]);
  s.add(24, 31); // bridges both
  assert.deepEqual(s.toJSON(), [[10, 40]]);
  s.add(0, 5);
  s.add(50, 60);
  assert.equal(s.runEnd(12), 40);
  assert.equal(s.runEnd(45), 45);
  assert.equal(s.nextStart(41), 50);
  assert.equal(s.nextStart(3), 3);
  assert.equal(s.nextStart(61), Infinity);
  assert.equal(s.total(), 5 + 30 + 10);
  assert.deepEqual(s.gaps(70), [[5, 10], [40, 50], [60, 70]]);
  s.add(7, 7); // empty: ignored
  assert.deepEqual(new IntervalSet(s.toJSON()).toJSON(), s.toJSON());
});

function batchOf(text: string): Batch {
  const b = takeBatch();
  b.len = b.buf.write(text);
  return b;
}

test('recent batches kept for readers: runs across batches, slices without copies, oldest dropped first', () => {
  // Buffers count whole: a window of two batches, however little each holds (a slow link's batch is mostly empty).
  const r = new RecentBytes(2 * BATCH_BYTES);
  const a = batchOf('abcdef');
  r.add(0, a); // [0,6)
  r.add(10, batchOf('klm')); // [10,13), not contiguous
  r.add(6, batchOf('ghij')); // [6,10): bridges; a third buffer, so [0,6) goes
  assert.equal(r.runEnd(0), 0);
  assert.equal(r.runEnd(7), 13);
  const text = (s: Slices) => Buffer.concat(s.bufs).toString();
  assert.equal(text(r.slices(7, 12, 100)), 'hijkl');
  assert.equal(text(r.slices(6, 13, 5)), 'ghijk', 'at most max bytes');
  assert.equal(text(r.slices(6, 13, 4)), 'ghij');
  assert.deepEqual(r.slices(3, 13, 100).bufs, []);
  const s = new RecentBytes(2 * BATCH_BYTES);
  const b = batchOf('wxyz');
  s.add(0, b);
  const view = s.slices(1, 3, 100);
  assert.equal(view.bufs[0]!.buffer, b.buf.buffer, 'a view, not a copy');
  s.clear();
  assert.equal(s.runEnd(0), 0);
  view.release();
});

test('a batch goes back to the pool only when its last holder lets go, and only once', () => {
  const before = pooledBatches();
  const b = batchOf('data'); // the receiver's hold
  const r = new RecentBytes(2 * BATCH_BYTES);
  r.add(0, b); // the window's hold
  const reader = r.slices(0, 4, 100); // a socket write's hold
  b.release(); // the write is done
  r.clear(); // evicted
  assert.equal(pooledBatches(), Math.max(0, before - 1), 'a reader still holds it');
  reader.release();
  reader.release(); // a second release is ignored
  b.release(); // so is one past zero
  assert.equal(pooledBatches(), Math.max(0, before - 1) + 1);
  const x = takeBatch();
  const y = takeBatch();
  assert.notEqual(x.buf, y.buf, 'never handed out twice');
  x.release();
  y.release();
});
