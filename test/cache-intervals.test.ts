import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IntervalSet } from '../src/registry/intervals.js';

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
