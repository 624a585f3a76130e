// The S3 driver against a store that is not trusted either (the real Ceph): an object too large
// to be a record is refused by readAll/readVersioned instead of being buffered whole.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { s3Driver, s3Endpoint } from './support/s3.js';

test('s3 driver: readAll and readVersioned refuse an object larger than 64 MiB (a planted record), read() still streams it', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const d = await s3Driver(endpoint);
  t.after(() => d.destroy());
  const big = Buffer.alloc((64 << 20) + 1, 0x61);
  await d.write('.ollama-registry/users.json', big);
  await assert.rejects(d.readAll('.ollama-registry/users.json'), /larger than 64 MiB/);
  await assert.rejects(d.readVersioned('.ollama-registry/users.json'), /larger than 64 MiB/);
  let n = 0;
  for await (const c of await d.read('.ollama-registry/users.json')) n += (c as Buffer).length;
  assert.equal(n, big.length);
  await d.delete('.ollama-registry/users.json');
});
