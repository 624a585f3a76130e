// Redirect mode, the store's side: presigned URLs on the real Ceph (127.0.0.2) are fetched by a
// plain HTTP client, signed for the public endpoint, and refused once expired; and the rules by
// which ollama's newer clients refuse a redirect (the thing under test is the rule function).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { redirectAllowed } from '../src/storage/s3-redirect.js';
import { S3Driver } from '../src/storage/s3.js';
import { newBucket, S3_CREDENTIALS, s3Driver, s3Endpoint } from './support/s3.js';

test('presign: a plain HTTP client fetches the bytes (whole and ranged) from Ceph on 127.0.0.2', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const d = await s3Driver(endpoint, { prefix: 'models' });
  t.after(() => d.destroy());
  const bytes = randomBytes(300_000);
  await d.write('blobs/sha256-x', bytes);
  const url = await d.presign('blobs/sha256-x');
  assert.equal(new URL(url).hostname, '127.0.0.2');
  assert.match(url, /X-Amz-Expires=86400/, 'a day by default: longer than the slowest pull');
  const whole = await fetch(url);
  assert.equal(whole.status, 200);
  assert.deepEqual(Buffer.from(await whole.arrayBuffer()), bytes);
  const part = await fetch(url, { headers: { Range: 'bytes=1000-1999' } });
  assert.equal(part.status, 206);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(1000, 2000));
});

test('presign: an expired URL gets 403 from Ceph; a tampered one too', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const d = await s3Driver(endpoint);
  t.after(() => d.destroy());
  await d.write('blobs/sha256-y', Buffer.from('secret bytes'));
  // Signed an hour ago for 60 s: expired, without waiting.
  const expired = await d.presign('blobs/sha256-y', 60, new Date(Date.now() - 3_600_000));
  const r = await fetch(expired);
  assert.equal(r.status, 403);
  assert.match(await r.text(), /AccessDenied|expired/i);
  const good = new URL(await d.presign('blobs/sha256-y', 600));
  good.pathname = good.pathname.replace('sha256-y', 'sha256-z');
  assert.equal((await fetch(good)).status, 403);
});

test('presign: URLs are signed for redirectEndpoint (the host clients reach), not the internal endpoint', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const bucket = await newBucket(endpoint);
  const writer = new S3Driver({ endpoint, bucket, credentials: S3_CREDENTIALS });
  // The internal endpoint of this one is unreachable: presigning never talks to the store.
  const signer = new S3Driver({ endpoint: 'http://127.0.0.1:9', redirectEndpoint: endpoint, bucket, credentials: S3_CREDENTIALS });
  t.after(() => {
    writer.destroy();
    signer.destroy();
  });
  await writer.write('blobs/sha256-w', Buffer.from('public bytes'));
  const url = await signer.presign('blobs/sha256-w', 600);
  assert.equal(new URL(url).origin, new URL(endpoint).origin);
  assert.equal(await (await fetch(url)).text(), 'public bytes');
});

test('presign: path-style by default, virtual-host addressing when forcePathStyle is false', async () => {
  const o = { endpoint: 'http://s3.example.test', bucket: 'models-bucket', credentials: S3_CREDENTIALS };
  const path = new S3Driver(o);
  const vhost = new S3Driver({ ...o, forcePathStyle: false, prefix: 'ollama' });
  try {
    const p = new URL(await path.presign('blobs/sha256-a'));
    assert.equal(p.host, 's3.example.test');
    assert.equal(p.pathname, '/models-bucket/blobs/sha256-a');
    const v = new URL(await vhost.presign('blobs/sha256-a'));
    assert.equal(v.host, 'models-bucket.s3.example.test');
    assert.equal(v.pathname, '/ollama/blobs/sha256-a');
  } finally {
    path.destroy();
    vhost.destroy();
  }
});

// A resolver of our own: names in the tests never reach the network.
const names: Record<string, string[]> = {
  'cdn.example.com': ['93.184.216.34'],
  'ceph.lan': ['10.1.2.3'],
  'mixed.example.com': ['93.184.216.34', '192.168.1.5'],
  'cgnat.example.com': ['100.64.1.1'],
  'v6local.example.com': ['fd00::1'],
};
const lookup = async (host: string): Promise<string[]> => {
  const a = names[host];
  if (!a) throw new Error(`ENOTFOUND ${host}`);
  return a;
};
const allowed = async (to: string, from: string, insecure = false): Promise<boolean> => (await redirectAllowed(to, from, { lookup, insecure })).ok;

test('redirect rules: what ollama clients follow', async () => {
  assert.equal(await allowed('https://cdn.example.com/b?sig=1', 'https://registry.example.com'), true);
  assert.equal(await allowed('http://cdn.example.com/b', 'http://registry.example.com'), true);
  assert.equal(await allowed('https://93.184.216.34/b', 'http://10.0.0.5:5000'), true);
  // --insecure relaxes the address checks; a client that reaches a registry over plain http uses it.
  assert.equal(await allowed('http://127.0.0.2:7480/b', 'http://127.0.0.1:5000', true), true);
  assert.equal((await redirectAllowed('http://127.0.0.2:7480/b', 'http://127.0.0.1:5000', { lookup })).ok, true);
  assert.equal((await redirectAllowed('https://ceph.lan/b', 'https://registry.lan', { lookup })).ok, false);
});

test('redirect rules: what ollama clients refuse', async () => {
  const refused = async (to: string, from: string, insecure = false, why?: RegExp): Promise<void> => {
    const v = await redirectAllowed(to, from, { lookup, insecure });
    assert.equal(v.ok, false, `${to} from ${from} must be refused`);
    if (why && !v.ok) assert.match(v.reason, why);
  };
  await refused('http://cdn.example.com/b', 'https://registry.example.com', false, /https to http/);
  await refused('http://cdn.example.com/b', 'https://registry.example.com', true, /https to http/);
  await refused('http://registry.example.com:8080/b', 'https://registry.example.com', false, /https to http/);
  await refused('ftp://cdn.example.com/b', 'http://registry.example.com');
  // The registry's own hostname (any port): ollama's downloader probe follows it, then needs a Location on the store's 200.
  await refused('http://127.0.0.1:9000/b', 'http://127.0.0.1:5000', false, /own hostname/);
  await refused('http://ceph.lan:7480/b', 'http://ceph.lan:5000', true, /own hostname/);
  await refused('file:///etc/passwd', 'http://registry.example.com');
  // Loopback, private, link-local, CGNAT, unspecified: by literal or by name, unless it is the registry's host.
  for (const host of ['127.0.0.2', '10.0.0.7', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '[::1]', '[fe80::1]', '[fd00::2]', '[::ffff:127.0.0.1]']) {
    await refused(`http://${host}:7480/b`, 'http://127.0.0.1:5000', false, /local/);
  }
  await refused('https://localhost/b', 'https://registry.example.com', false, /local/);
  await refused('https://x.localhost/b', 'https://registry.example.com', false, /local/);
  await refused('http://ceph.lan:7480/b', 'http://registry.lan:5000', false, /10\.1\.2\.3/);
  await refused('http://mixed.example.com/b', 'http://registry.example.com', false, /192\.168\.1\.5/);
  await refused('http://cgnat.example.com/b', 'http://registry.example.com', false, /local/);
  await refused('http://v6local.example.com/b', 'http://registry.example.com', false, /local/);
  await refused('http://nowhere.example.com/b', 'http://registry.example.com', false, /does not resolve/);
  // A lookup that never answers counts as unresolvable, after its timeout.
  const v = await redirectAllowed('https://slow.example.com/b', 'https://registry.example.com', { lookup: () => new Promise(() => {}), lookupTimeoutMs: 50 });
  assert.equal(v.ok, false);
  await refused('not a url', 'http://registry.example.com');
});

test('redirectUrl: only in redirect mode, and only where ollama clients follow (Ceph on 127.0.0.2, the registry on 127.0.0.1)', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const bucket = await newBucket(endpoint);
  const on = new S3Driver({ endpoint, bucket, credentials: S3_CREDENTIALS, redirect: true });
  const off = new S3Driver({ endpoint, bucket, credentials: S3_CREDENTIALS });
  t.after(() => {
    on.destroy();
    off.destroy();
  });
  await on.write('blobs/sha256-r', Buffer.from('redirected bytes'));
  const port = new URL(endpoint).port;
  // Off by default: stream.
  assert.equal(await off.redirectUrl('blobs/sha256-r', `http://127.0.0.2:${port}`), null);
  // The store on the registry's own hostname: the downloader's probe would follow it and fail; stream.
  assert.equal(await on.redirectUrl('blobs/sha256-r', `http://127.0.0.2:5000`), null);
  // https registry, http store: refused.
  assert.equal(await on.redirectUrl('blobs/sha256-r', 'https://127.0.0.1'), null);
  // A registry on 127.0.0.1 over http (so its clients use --insecure), the store on 127.0.0.2: followed, and the URL gives the bytes.
  const url = await on.redirectUrl('blobs/sha256-r', 'http://127.0.0.1:5000');
  assert.ok(url);
  assert.equal(await (await fetch(url)).text(), 'redirected bytes');
});
