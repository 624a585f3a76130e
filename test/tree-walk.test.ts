import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TreeWalk } from '../src/registry/manifests/manifest-tree.js';

test('tree walk: each node once, breadth first, cycles end, nodes keyed by a function', () => {
  const tree: Record<string, string[]> = { a: ['b', 'c'], b: ['d', 'a'], c: ['d'], d: ['b'] };
  const walk = new TreeWalk(['a', 'a']);
  const order: string[] = [];
  for (let n = walk.next(); n; n = walk.next()) {
    order.push(n);
    walk.add(tree[n] ?? []);
  }
  assert.deepEqual(order, ['a', 'b', 'c', 'd']);
  assert.equal(walk.visited, 4);
  const byDigest = new TreeWalk([{ digest: 'x', size: 1 }, { digest: 'x', size: 2 }], (d) => d.digest);
  assert.deepEqual(byDigest.next(), { digest: 'x', size: 1 });
  assert.equal(byDigest.next(), undefined);
  // A long walk drops what it handed out, and still hands out each node once.
  const long = new TreeWalk(Array.from({ length: 5000 }, (_, i) => String(i)));
  let n = 0;
  for (let x = long.next(); x; x = long.next()) {
    if (n++ % 2 === 0 && Number(x) < 5000) long.add([x, String(Number(x) + 5000)]);
  }
  assert.equal(n, 7500);
});
