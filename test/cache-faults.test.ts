// Faults on the upstream link, put in on purpose by the test front: dropped connections, wrong
// bytes, stalls, 5xx, a 307 to another host (as registry.ollama.ai's CDN does), a slow link,
// token auth, a dead first upstream. In every case no corrupt blob is ever visible, a client
// gets the right bytes or an error, and the next pull recovers.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FILL_TUNING } from '../src/registry/pull-through/fills.js';
import { finishRouting, upstreamFromUrl } from '../src/upstream/config.js';
import { startCacheStack, type CacheStack } from './support/cache.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry } from './support/server.js';

const MiB = 1 << 20;
let s: CacheStack;
let n = 0;

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A fresh blob on the upstream, its manifest already fetched through the cache (as ollama asks first). */
async function freshBlob(size: number): Promise<{ digest: string; size: number }> {
  const m = await makeModel(s.upstream.data, { model: 'f', tag: `t${++n}`, layers: [{ mediaType: 'application/vnd.ollama.image.model', size, seed: `fault-${n}` }] });
  assert.equal((await request(s.cache.url, `/v2/library/f/manifests/t${n}`)).status, 200);
  return m.blobs[0]!;
}

const blobUrl = (d: string) => `/v2/library/f/blobs/${d}`;
const published = (d: string) => existsSync(path.join(s.cache.data, 'blobs', `sha256-${d.slice(7)}`));
const blobGets = () => s.front.requests.filter((q) => q.method === 'GET' && q.path.includes('/blobs/'));

before(async () => {
  FILL_TUNING.firstChunk = 512 << 10;
  FILL_TUNING.maxChunk = 2 * MiB;
  FILL_TUNING.minSplit = 256 << 10;
  s = await startCacheStack({ upstream: { timeout: '1s', retries: 1, maxFailures: 50 } });
});
after(() => s.close());

test('the connection drops mid-blob: the fill resumes from the byte where it stopped', async () => {
  const b = await freshBlob(4 * MiB);
  s.front.reset();
  let dropped = 0;
  s.front.fault = (q) => (q.path.includes('/blobs/') && q.method === 'GET' && dropped++ === 0 ? { kind: 'drop', after: 300_000 } : undefined);
  try {
    const r = await request(s.cache.url, blobUrl(b.digest));
    assert.equal(sha(r.body), b.digest);
  } finally {
    s.front.fault = undefined;
  }
  const resumed = blobGets().slice(1).map((q) => Number(/bytes=(\d+)-/.exec(q.range ?? '')?.[1]));
  assert.ok(resumed.some((x) => x > 0 && x <= 300_000), `resumed at ${resumed.join(',')}`);
  assert.ok(s.front.blobBytes() >= b.size && s.front.blobBytes() <= b.size + 300_000, `upstream bytes ${s.front.blobBytes()}`);
});

test('wrong bytes: the whole-blob client gets an error, nothing is published, the next pull recovers', async () => {
  const b = await freshBlob(2 * MiB);
  s.front.fault = (q) => (q.path.includes('/blobs/') && q.method === 'GET' ? { kind: 'corrupt' } : undefined);
  try {
    await assert.rejects(request(s.cache.url, blobUrl(b.digest)));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(published(b.digest), false);
    assert.deepEqual(await readdir(path.join(s.cache.data, '.ollama-registry', 'scratch', 'fills')), []);
  } finally {
    s.front.fault = undefined;
  }
  const again = await request(s.cache.url, blobUrl(b.digest));
  assert.equal(again.status, 200);
  assert.equal(sha(again.body), b.digest);
  assert.equal(published(b.digest), true);
});

test('a stalled upstream response is given up after the timeout and retried', async () => {
  const b = await freshBlob(2 * MiB);
  let stalled = 0;
  s.front.fault = (q) => (q.path.includes('/blobs/') && q.method === 'GET' && stalled++ === 0 ? { kind: 'stall', after: 100_000 } : undefined);
  try {
    const r = await request(s.cache.url, blobUrl(b.digest));
    assert.equal(sha(r.body), b.digest);
    assert.equal(stalled >= 2, true);
  } finally {
    s.front.fault = undefined;
  }
});

test('5xx answers are retried with backoff', async () => {
  const b = await freshBlob(1 * MiB);
  let failures = 0;
  s.front.fault = (q) => (q.path.includes('/blobs/') && q.method === 'GET' && failures++ < 3 ? { kind: 'status', status: 503 } : undefined);
  try {
    const r = await request(s.cache.url, blobUrl(b.digest));
    assert.equal(sha(r.body), b.digest);
  } finally {
    s.front.fault = undefined;
  }
});

test('blobs answered with a 307 to a CDN host (127.0.0.2): followed, and further ranges go straight to the CDN', async () => {
  const b = await freshBlob(6 * MiB);
  s.front.reset();
  assert.ok(s.front.redirectBlobs, 'the front redirects blobs, as registry.ollama.ai does');
  const head = await request(s.cache.url, blobUrl(b.digest), { method: 'HEAD' });
  assert.equal(head.headers['content-length'], String(b.size));
  const r = await request(s.cache.url, blobUrl(b.digest));
  assert.equal(sha(r.body), b.digest);
  const gets = blobGets();
  assert.ok(gets.filter((q) => q.host === 'cdn').length >= 3, 'ranges fetched from the CDN host');
  assert.ok(gets.filter((q) => q.host === 'registry').length <= 2, `registry asked ${gets.filter((q) => q.host === 'registry').length} times`);
  assert.equal(s.front.blobBytes(), b.size);
});

test('a slow link: 16 ranged parts all receive bytes early, each byte crosses once', async () => {
  const b = await freshBlob(16 * MiB);
  s.front.reset();
  s.front.rate = 16 * MiB; // one second for the blob
  const part = 1 * MiB;
  // For each part: how many blob bytes had crossed the link when its first byte arrived.
  const crossedAtFirstByte: number[] = [];
  try {
    await Promise.all(Array.from({ length: 16 }, async (_, k) => {
      const r = await new Promise<Buffer>((resolve, reject) => {
        import('node:http').then(({ default: http }) => {
          const req = http.get(`${s.cache.url}${blobUrl(b.digest)}`, { agent: false, headers: { Range: `bytes=${k * part}-${(k + 1) * part - 1}` } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => {
              if (!chunks.length) crossedAtFirstByte[k] = s.front.blobBytes();
              chunks.push(c);
            });
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
          });
          req.on('error', reject);
        }, reject);
      });
      assert.equal(r.length, part);
    }));
  } finally {
    s.front.rate = 0;
  }
  assert.equal(s.front.blobBytes(), b.size);
  // One sequential stream would give the last part its first byte after 15/16 of the blob crossed.
  assert.ok(Math.max(...crossedAtFirstByte) < b.size * 0.75, `blob bytes across the link at each part's first byte: ${crossedAtFirstByte.join(',')} of ${b.size}`);
});

test('an upstream that wants a Bearer token for anonymous pulls (as CNCF registries do), one per repository', async () => {
  const m = await makeModel(s.upstream.data, { model: 'tok', tag: 'v1' });
  const other = await makeModel(s.upstream.data, { model: 'tok2', tag: 'v1' });
  s.front.reset();
  s.front.requireToken = true;
  try {
    const r = await request(s.cache.url, '/v2/library/tok/manifests/v1');
    assert.equal(r.status, 200);
    const blob = await request(s.cache.url, `/v2/library/tok/blobs/${m.blobs[0]!.digest}`);
    assert.equal(sha(blob.body), m.blobs[0]!.digest);
    assert.ok(s.front.requests.some((q) => q.path.startsWith('/token?') && q.path.includes('scope=repository%3Alibrary%2Ftok%3Apull')));
    // The token for library/tok is refused for library/tok2: the cache asks for one for tok2.
    const r2 = await request(s.cache.url, '/v2/library/tok2/manifests/v1');
    assert.equal(r2.status, 200);
    assert.deepEqual(r2.body, other.manifestBytes);
    assert.ok(s.front.requests.some((q) => q.path.startsWith('/token?') && q.path.includes('scope=repository%3Alibrary%2Ftok2%3Apull')));
    assert.ok(s.front.tokens.size >= 2);
  } finally {
    s.front.requireToken = false;
  }
});

test('a dead first upstream falls back to the next; a dead only upstream is cut off and then fails without being asked', async () => {
  const m = await makeModel(s.upstream.data, { model: 'fb', tag: 'v1' });
  // "Dead": accepts each connection and hangs up at once; counts how often it is tried.
  let tried = 0;
  const dead = net.createServer((c) => {
    tried++;
    c.destroy();
  });
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
  const upstreams = [
    upstreamFromUrl(`http://127.0.0.1:${(dead.address() as AddressInfo).port}`, 'a', { name: 'dead', timeout: '1s', retries: 0, maxFailures: 2, failTimeout: '30s' }),
    upstreamFromUrl(s.front.url, 'b', { name: 'alive', timeout: '2s', allowPrivateHosts: ['127.0.0.2'] }), // its CDN host
  ];
  const reg = await startTestRegistry({ config: { upstreams, routes: finishRouting(upstreams, [{ namespace: 'library', upstreams: ['dead', 'alive'] }, { namespace: '*', upstreams: ['dead'] }]) } });
  try {
    const r = await request(reg.url, '/v2/library/fb/manifests/v1');
    assert.equal(r.status, 200);
    const blob = await request(reg.url, `/v2/library/fb/blobs/${m.blobs[0]!.digest}`);
    assert.equal(sha(blob.body), m.blobs[0]!.digest);
    for (let i = 0; i < 2; i++) await request(reg.url, '/v2/other/x/manifests/v1');
    const triedBefore = tried;
    const cut = await request(reg.url, '/v2/other/x/manifests/v1');
    assert.equal(cut.status, 503);
    assert.match(cut.json().errors[0].message, /upstream dead .* is cut off after 2 failures in a row/);
    assert.equal(tried, triedBefore, 'a cut-off upstream is not contacted');
  } finally {
    await reg.app.cache?.close();
    await reg.close();
    await new Promise((r) => dead.close(r));
  }
});
