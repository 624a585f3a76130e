import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coalesce } from '../src/coalesce.js';

test('coalesce: one call per key while it runs, shared results and errors, forgotten once settled', async () => {
  const c = new Coalesce<string, number>();
  let calls = 0;
  let release!: (n: number) => void;
  const fn = () => { calls++; return new Promise<number>((r) => { release = r; }); };
  const a = c.run('k', fn);
  const b = c.run('k', fn);
  assert.equal(a, b);
  assert.equal(calls, 1);
  assert.equal(c.size, 1);
  release(7);
  assert.deepEqual(await Promise.all([a, b]), [7, 7]);
  assert.equal(c.size, 0);
  const other = c.run('k', async () => { calls++; throw new Error('boom'); });
  const same = c.run('k', fn);
  await assert.rejects(other, /boom/);
  await assert.rejects(same, /boom/);
  assert.equal(calls, 2);
  assert.equal(c.size, 0);
  // A synchronous throw becomes the shared rejection, and is forgotten too.
  await assert.rejects(c.run('s', () => { throw new Error('sync'); }), /sync/);
  assert.equal(c.size, 0);
});
