// The driver conformance suite: every storage driver runs these same tests (test/driver-*.test.ts).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { access, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Driver } from '../../src/storage/driver.js';
import { acquireLease, leaseHolder, releaseLease, renewLease } from '../../src/storage/lease.js';
import { tempDir } from './server.js';

async function text(s: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts).toString();
}

async function keys(d: Driver, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const e of d.entries(prefix)) out.push(e.key);
  return out;
}

/** `make` gives a fresh, empty store, or null when this machine cannot have one (the test then skipped itself). */
export function driverSuite(name: string, make: (t: TestContext) => Promise<Driver | null>): void {
  test(`${name}: write, stat, read whole and ranged, readAll, delete`, async (t) => {
    const d = await make(t);
    if (!d) return;
    assert.equal(await d.stat('blobs/a'), null);
    await assert.rejects(d.read('blobs/a'), { code: 'ENOENT' });
    assert.deepEqual(await d.write('blobs/a', Buffer.from('hello world')), { size: 11 });
    assert.equal((await d.stat('blobs/a'))?.size, 11);
    assert.equal(await text(await d.read('blobs/a')), 'hello world');
    assert.equal(await text(await d.read('blobs/a', { start: 6, end: 10 })), 'world');
    assert.equal((await d.readAll('blobs/a')).toString(), 'hello world');
    await d.write('blobs/a', Readable.from([Buffer.from('new '), Buffer.from('bytes')]));
    assert.equal((await d.readAll('blobs/a')).toString(), 'new bytes');
    await d.delete('blobs/a');
    await d.delete('blobs/a'); // absent: no error
    assert.equal(await d.stat('blobs/a'), null);
  });

  test(`${name}: a pending write is invisible until commit, and cancel leaves nothing`, async (t) => {
    const d = await make(t);
    if (!d) return;
    const before = await keys(d);
    const w = await d.create('blobs/pending');
    w.stream.write(Buffer.alloc(3000, 1));
    assert.equal(await d.stat('blobs/pending'), null);
    assert.deepEqual(await keys(d, 'blobs'), []);
    assert.deepEqual(await w.commit(), { size: 3000 });
    assert.equal((await d.stat('blobs/pending'))?.size, 3000);
    const c = await d.create('blobs/cancelled');
    c.stream.write(Buffer.alloc(100));
    await c.cancel();
    assert.equal(await d.stat('blobs/cancelled'), null);
    assert.deepEqual(await keys(d), [...before, 'blobs/pending'].sort());
    await assert.rejects(w.commit(), /already committed/);
  });

  test(`${name}: a large streamed write (several multipart parts) arrives whole; cancelled, it leaves nothing`, async (t) => {
    const d = await make(t);
    if (!d) return;
    const want = createHash('sha256');
    const w = await d.create('blobs/large');
    for (let i = 0; i < 40; i++) {
      const chunk = Buffer.alloc(1 << 20, i); // a written buffer belongs to the stream: never reuse it
      want.update(chunk);
      if (!w.stream.write(chunk)) await once(w.stream, 'drain');
    }
    assert.deepEqual(await w.commit(), { size: 40 << 20 });
    const got = createHash('sha256');
    for await (const c of await d.read('blobs/large')) got.update(c as Buffer);
    assert.equal(got.digest('hex'), want.digest('hex'));
    const c = await d.create('blobs/large-cancelled');
    for (let i = 0; i < 20; i++) if (!c.stream.write(Buffer.alloc(1 << 20))) await once(c.stream, 'drain');
    await c.cancel();
    assert.equal(await d.stat('blobs/large-cancelled'), null);
    assert.deepEqual(await keys(d, 'blobs'), ['blobs/large']);
  });

  test(`${name}: entries lists every object under a prefix, at any depth, with sizes`, async (t) => {
    const d = await make(t);
    if (!d) return;
    await d.write('manifests/h/ns/m/latest', Buffer.from('12'));
    await d.write('manifests/h/ns/m/v1', Buffer.from('123'));
    await d.write('manifests/h/other/x/1', Buffer.from('1'));
    await d.write('blobs/sha256-00', Buffer.from(''));
    const got = [];
    for await (const e of d.entries('manifests/h/ns')) got.push([e.key, e.size, e.mtimeMs > 0]);
    assert.deepEqual(got, [['manifests/h/ns/m/latest', 2, true], ['manifests/h/ns/m/v1', 3, true]]);
    assert.equal((await keys(d, 'manifests')).length, 3);
    assert.deepEqual(await keys(d, 'nothing/here'), []);
    assert.deepEqual(await d.list('manifests/h'), ['ns', 'other']);
  });

  test(`${name}: putFile publishes a local file whole and consumes it; the key's time is the putFile's`, async (t) => {
    const d = await make(t);
    if (!d) return;
    const dir = await tempDir();
    const src = path.join(dir, 'scratch-file');
    await writeFile(src, 'scratch bytes');
    await d.putFile(src, 'blobs/in');
    assert.equal((await d.readAll('blobs/in')).toString(), 'scratch bytes');
    await assert.rejects(access(src), { code: 'ENOENT' });
    const old = path.join(dir, 'old-file'); // e.g. hard-linked from another models folder
    await writeFile(old, 'old bytes');
    await utimes(old, new Date('2020-01-01'), new Date('2020-01-01'));
    await d.putFile(old, 'blobs/old');
    assert.equal((await d.readAll('blobs/old')).toString(), 'old bytes');
    assert.ok(Date.now() - (await d.stat('blobs/old'))!.mtimeMs < 3600_000, 'the stored time is when the key got its bytes');
    await assert.rejects(d.putFile(path.join(dir, 'absent'), 'blobs/none'), { code: 'ENOENT' });
    assert.equal(await d.stat('blobs/none'), null);
  });

  test(`${name}: no folders — a prefix has no stat, and deleting its keys leaves nothing listed`, async (t) => {
    const d = await make(t);
    if (!d) return;
    await d.write('.ollama-registry/uploads/u1/info.json', Buffer.from('{}'));
    await d.write('.ollama-registry/uploads/u1/data', Buffer.from('x'));
    assert.equal(await d.stat('.ollama-registry/uploads/u1'), null);
    await d.delete('.ollama-registry/uploads/u1'); // a prefix is no object: nothing happens
    assert.deepEqual(await d.list('.ollama-registry/uploads'), ['u1']);
    for await (const e of d.entries('.ollama-registry/uploads/u1')) await d.delete(e.key);
    assert.deepEqual(await d.list('.ollama-registry/uploads'), []);
    assert.deepEqual(await d.list('.ollama-registry/uploads/u1'), []);
  });

  test(`${name}: createIfAbsent has exactly one winner among concurrent writers`, async (t) => {
    const d = await make(t);
    if (!d) return;
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => d.createIfAbsent('locks/x', Buffer.from(`writer ${i}`))));
    const winners = results.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
    assert.equal(winners.length, 1);
    const cur = await d.readVersioned('locks/x');
    assert.equal(cur?.body.toString(), `writer ${winners[0]}`);
    assert.equal(cur?.version, results[winners[0]!]);
  });

  test(`${name}: replaceIf and deleteIf compare versions; one of concurrent swaps wins`, async (t) => {
    const d = await make(t);
    if (!d) return;
    const v1 = (await d.createIfAbsent('rec', Buffer.from('one')))!;
    assert.ok(v1);
    const v2 = await d.replaceIf('rec', Buffer.from('two'), v1);
    assert.ok(v2 && v2 !== v1);
    assert.equal(await d.replaceIf('rec', Buffer.from('stale'), v1), null);
    assert.equal((await d.readAll('rec')).toString(), 'two');
    const swaps = await Promise.all(Array.from({ length: 8 }, (_, i) => d.replaceIf('rec', Buffer.from(`three ${i}`), v2!)));
    assert.equal(swaps.filter(Boolean).length, 1);
    assert.equal(await d.replaceIf('absent', Buffer.from('x'), v1), null);
    const cur = (await d.readVersioned('rec'))!;
    assert.equal(await d.deleteIf('rec', v1), false);
    assert.equal(await d.deleteIf('rec', cur.version), true);
    assert.equal(await d.readVersioned('rec'), null);
  });

  test(`${name}: leases — one holder, renewal, takeover after expiry with a higher fencing token`, async (t) => {
    const d = await make(t);
    if (!d) return;
    const t0 = 1_000_000;
    const a = await acquireLease(d, 'leases/fill-x', { owner: 'A', url: 'http://a' }, 1000, t0);
    assert.ok('lease' in a);
    assert.equal(a.lease.record.token, 1);
    const b = await acquireLease(d, 'leases/fill-x', { owner: 'B' }, 1000, t0 + 10);
    assert.ok('heldBy' in b && b.heldBy.owner === 'A' && b.heldBy.url === 'http://a');
    const renewed = await renewLease(d, a.lease, 1000, t0 + 500);
    assert.ok(renewed);
    assert.equal((await leaseHolder(d, 'leases/fill-x', t0 + 1400))?.owner, 'A');
    // A stops renewing: after expiry B takes over, A's renewal and release then fail.
    const b2 = await acquireLease(d, 'leases/fill-x', { owner: 'B' }, 1000, t0 + 1600);
    assert.ok('lease' in b2);
    assert.equal(b2.lease.record.token, 2);
    assert.equal(await renewLease(d, renewed, 1000, t0 + 1700), null);
    assert.equal(await releaseLease(d, renewed), false);
    // Concurrent takers of a free lease: exactly one wins.
    assert.equal(await releaseLease(d, b2.lease), true);
    const racers = await Promise.all(['C', 'D', 'E', 'F'].map((o) => acquireLease(d, 'leases/fill-x', { owner: o }, 1000, t0 + 2000)));
    assert.equal(racers.filter((r) => 'lease' in r).length, 1);
    // An unreadable record counts as free.
    await d.write('leases/junk', Buffer.from('{not json'));
    const j = await acquireLease(d, 'leases/junk', { owner: 'G' }, 1000, t0);
    assert.ok('lease' in j);
  });
}
