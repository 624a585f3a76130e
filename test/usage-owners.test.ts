// Last-pull times are one record per owner (host), merged on read: two replicas flushing at the
// same time never lose each other's times, and neither reads the other's record to write its own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageTracker } from '../src/registry/housekeeping/usage.js';
import { MemoryDriver } from '../src/storage/memory.js';

test('last pulls: each owner writes only its record; every reader sees the latest time per tag', async () => {
  const d = new MemoryDriver();
  const a = new UsageTracker(d, 'replica-a');
  const b = new UsageTracker(d, 'replica-b');
  const ref = (model: string) => ({ host: 'registry.ollama.ai', namespace: 'library', model, tag: 'latest' });
  a.touch(ref('x'), 1000);
  a.touch(ref('y'), 5000);
  b.touch(ref('x'), 3000);
  b.touch(ref('z'), 2000);
  await Promise.all([a.flush(), b.flush()]);
  const keys: string[] = [];
  for await (const e of d.entries('.ollama-registry/last-pulled')) keys.push(e.key);
  assert.deepEqual(keys, ['.ollama-registry/last-pulled/replica-a.json', '.ollama-registry/last-pulled/replica-b.json']);
  const merged = Object.fromEntries(await new UsageTracker(d, 'reader').all());
  assert.deepEqual(merged, { 'registry.ollama.ai/library/x:latest': 3000, 'registry.ollama.ai/library/y:latest': 5000, 'registry.ollama.ai/library/z:latest': 2000 });
  // A's later flush keeps B's times (it never rewrites B's record) and its own earlier ones.
  a.touch(ref('z'), 9000);
  await a.flush();
  assert.deepEqual(Object.fromEntries(await b.all()), { ...merged, 'registry.ollama.ai/library/z:latest': 9000 });
  assert.equal(JSON.parse((await d.readAll('.ollama-registry/last-pulled/replica-b.json')).toString())['registry.ollama.ai/library/z:latest'], 2000);
});
