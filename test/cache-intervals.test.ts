import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecentBytes } from '../src/registry/pull-through/fill-reader.js';
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

test('recent batches kept for readers: runs across batches, slices without copies, oldest dropped first', () => {
  const r = new RecentBytes(10);
  const a = Buffer.from('abcd');
  r.add(0, [a, Buffer.from('ef')], 6); // [0,6)
  r.add(10, [Buffer.from('klm')], 3); // [10,13), not contiguous
  r.add(6, [Buffer.from('ghij')], 4); // [6,10): bridges; 13 bytes > 10, so [0,6) goes
  assert.equal(r.runEnd(0), 0);
  assert.equal(r.runEnd(7), 13);
  assert.equal(Buffer.concat(r.slices(7, 12, 100)).toString(), 'hijkl');
  assert.equal(Buffer.concat(r.slices(6, 13, 5)).toString(), 'ghijklm', 'the max is checked between buffers');
  assert.equal(Buffer.concat(r.slices(6, 13, 4)).toString(), 'ghij');
  assert.deepEqual(r.slices(3, 13, 100), []);
  const s = new RecentBytes(100);
  s.add(0, [a], 4);
  assert.equal(s.slices(1, 3, 100)[0]!.buffer, a.buffer, 'a view, not a copy');
  s.clear();
  assert.equal(s.runEnd(0), 0);
});
