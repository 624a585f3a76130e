// A hostile upstream: it sends the cache (by redirect or token realm) to an internal service,
// downgrades https to http, names file: URLs, passes HTML off as a 412, answers oversized or
// broken manifests. The upstream is on 127.0.0.2 and the "internal" service on 127.0.0.1, so the
// real address check runs (loopback is refused unless it is the upstream's own host or listed in
// allowPrivateHosts). The internal service's body is a marker that must never reach a client,
// and the service must not even be asked.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { loadConfig } from '../src/config.js';
import { isLocalAddress } from '../src/upstream/guard.js';
import { startCacheStack, upstreamConfig } from './support/cache.js';
import { request, type RawResponse } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';
import { makeLocalCert } from './support/tls.js';

const MARKER = 'INTERNAL-SECRET-7f3a9c';
const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Srv { url: string; seen: string[]; close(): Promise<void> }

async function listen(server: http.Server, host: string, scheme: string): Promise<string> {
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return `${scheme}://${host}:${(server.address() as AddressInfo).port}`;
}

function closer(server: http.Server): () => Promise<void> {
  return () => new Promise((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });
}

// The one layer of the upstream's good manifest: as long as the internal service's body, so
// that body would pass for the layer's bytes (until the digest check) if the cache followed.
const SECRET = Buffer.from(MARKER.repeat(Math.ceil((2 << 20) / MARKER.length)));
const LAYER = Buffer.alloc(SECRET.length, 'x');

/**
 * The internal service: answers everything with the marker, ranges included (a token request
 * gets it as a JSON refusal, which an error message would quote).
 */
async function startInternal(): Promise<Srv> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if ((req.url ?? '').includes('scope=')) {
      const body = JSON.stringify({ errors: [{ code: 'DENIED', message: MARKER }] });
      res.writeHead(403, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      return res.end(body);
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const [start, end] = range ? [Number(range[1]), Math.min(Number(range[2]), SECRET.length - 1)] : [0, SECRET.length - 1];
    const headers: Record<string, string | number> = { 'Content-Type': 'text/plain', 'Content-Length': end - start + 1 };
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${SECRET.length}`;
    res.writeHead(range ? 206 : 200, headers);
    res.end(req.method === 'HEAD' ? undefined : SECRET.subarray(start, end + 1));
  });
  return { url: await listen(server, '127.0.0.1', 'http'), seen, close: closer(server) };
}

const CONFIG = Buffer.from('{}');
const MANIFEST = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
  config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: sha(CONFIG), size: CONFIG.length },
  layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: sha(LAYER), size: LAYER.length }],
}));

/** What the hostile upstream answers: by path, `to` is where it redirects (or names as realm). */
function hostileHandler(to: () => string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    const send = (status: number, headers: Record<string, string>, body: string | Buffer = '') => {
      res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (/^\/v2\/library\/(good|broken)\/manifests\/1$/.test(path)) return send(200, { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' }, MANIFEST);
    if (path.startsWith('/v2/library/good/blobs/')) return send(307, { Location: to() });
    if (path === '/v2/library/redirect/manifests/1') return send(307, { Location: to() });
    if (path === '/v2/library/realm/manifests/1') return send(401, { 'WWW-Authenticate': `Bearer realm="${to()}",service="x",scope="repository:library/realm:pull"` });
    if (path === '/v2/library/gated/manifests/1') return send(412, { 'Content-Type': 'text/html' }, `<script>alert(document.cookie)</script>${MARKER}`);
    if (path === '/v2/library/huge/manifests/1') return send(200, { 'Content-Type': 'application/json' }, Buffer.alloc(5 << 20, ' '));
    if (path === '/v2/library/garbage/manifests/1') return send(200, { 'Content-Type': 'text/html' }, `<html>${MARKER}</html>`);
    if (path.startsWith('/v2/library/broken/blobs/')) {
      // The answer starts, then the connection breaks before a byte of the body.
      const [start, end] = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')?.slice(1).map(Number) ?? [0, LAYER.length - 1];
      res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${LAYER.length}`, 'Content-Length': end! - start! + 1 });
      res.flushHeaders();
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    // Silent: no answer at all; slow: the answer starts, then no byte of the body (the cache's
    // upstream timeout is 2 s).
    if (path === '/v2/library/silent/manifests/1') return;
    if (path === '/v2/library/slow/manifests/1') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 1000 });
      res.write('{"schemaVersion":');
      return;
    }
    if (path === '/v2/library/reset/manifests/1') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 1000 });
      res.write('{"schemaVersion":');
      setTimeout(() => res.socket?.destroy(), 50);
      return;
    }
    send(404, { 'Content-Type': 'application/json' }, '{"errors":[{"code":"NOT_FOUND","message":"no"}]}');
  };
}

let internal: Srv;
let target = '';
let hostile: Srv;
let cache: TestRegistry;
const open: TestRegistry[] = [];

/** A cache of `url`; maxFailures 0 so refusals in one test do not cut the upstream off for the next. */
async function cacheOf(url: string, extra: Record<string, unknown> = {}): Promise<TestRegistry> {
  const c = await startTestRegistry({ config: upstreamConfig(url, { maxFailures: 0, retries: 0, ...extra }) });
  open.push(c);
  return c;
}

before(async () => {
  internal = await startInternal();
  const server = http.createServer(hostileHandler(() => target));
  hostile = { url: await listen(server, '127.0.0.2', 'http'), seen: [], close: closer(server) };
  cache = await cacheOf(hostile.url);
});

after(async () => {
  for (const c of open) {
    await c.app.cache?.close();
    await c.close();
  }
  await hostile.close();
  await internal.close();
});

/**
 * A GET on a raw socket: everything that arrived until the server closed or cut the connection
 * (a fill that fails its digest check cuts the response after sending the bytes it had).
 */
function rawGet(base: string, path: string, headers: Record<string, string> = {}): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(Number(port), hostname, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('error', () => {});
  });
}

function assertNoMarker(r: RawResponse | string): void {
  if (typeof r === 'string') return assert.doesNotMatch(r, new RegExp(MARKER));
  assert.doesNotMatch(r.text(), new RegExp(MARKER));
  for (const v of Object.values(r.headers)) assert.doesNotMatch(String(v), new RegExp(MARKER));
}

const internalTargets = () => [
  `${internal.url}/secret`,
  `http://localhost:${new URL(internal.url).port}/secret`, // a name: refused after resolving it
  `http://[::ffff:127.0.0.1]:${new URL(internal.url).port}/secret`,
  `http://0.0.0.0:${new URL(internal.url).port}/secret`,
];

test('a redirect of a manifest to an internal service is refused: 502 with a reason, the service is never asked', async () => {
  for (const to of internalTargets()) {
    target = to;
    const r = await request(cache.url, '/v2/library/redirect/manifests/1');
    assertNoMarker(r);
    assert.equal(r.status, 502, `${to}: ${r.text()}`);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.match(r.json().errors[0].message, /upstream up \(http:\/\/127\.0\.0\.2:\d+\) (redirected to|sent this registry to) .*a local or private address: not followed \(allowPrivateHosts/);
  }
  assert.deepEqual(internal.seen, []);
});

test('a blob redirect to an internal service is refused: its body never reaches the client as blob bytes', async () => {
  const m = await request(cache.url, '/v2/library/good/manifests/1');
  assert.equal(m.status, 200);
  for (const to of internalTargets()) {
    target = to;
    const r = await rawGet(cache.url, `/v2/library/good/blobs/${sha(LAYER)}`);
    assertNoMarker(r);
    assert.match(r, /^HTTP\/1\.1 502 [^]*"UPSTREAM_FAILED"[^]*a local or private address: not followed/, 'an error with its reason, not a cut connection');
    assertNoMarker(await rawGet(cache.url, `/v2/library/good/blobs/${sha(LAYER)}`, { Range: 'bytes=0-3' }));
  }
  assert.deepEqual(internal.seen, []);
});

test('a token realm on an internal service is not asked for a token: 502, no marker', async () => {
  for (const to of internalTargets()) {
    target = `${to.replace(/\/secret$/, '')}/token`;
    const r = await request(cache.url, '/v2/library/realm/manifests/1');
    assertNoMarker(r);
    assert.equal(r.status, 502, r.text());
    assert.match(r.json().errors[0].message, /(named a token realm at|sent this registry to) .*a local or private address: not followed/);
  }
  assert.deepEqual(internal.seen, []);
});

test('redirects to file: and other schemes are refused with a reason; a loop ends at the hop cap', async () => {
  for (const to of ['file:///etc/passwd', 'ftp://127.0.0.2/x', 'data:text/plain,hello']) {
    target = to;
    const r = await request(cache.url, '/v2/library/redirect/manifests/1');
    assert.equal(r.status, 502, `${to}: ${r.text()}`);
    assert.match(r.json().errors[0].message, /redirected to a (file|ftp|data): URL: only http and https are followed/);
  }
  // A redirect loop on its own host ends at the hop cap.
  target = `${hostile.url}/v2/library/redirect/manifests/1`;
  const loop = await request(cache.url, '/v2/library/redirect/manifests/1');
  assert.equal(loop.status, 502, loop.text());
  assert.match(loop.json().errors[0].message, /redirected more than 10 times/);
});

test('an https upstream cannot downgrade to plain http, even to a host that is allowed', async () => {
  const dir = await tempDir();
  const { cert, key } = await makeLocalCert(dir);
  const server = https.createServer({ cert: await readFile(cert), key: await readFile(key) }, hostileHandler(() => target));
  const url = await listen(server as unknown as http.Server, '127.0.0.2', 'https');
  try {
    const c = await cacheOf(url, { ca: cert, allowPrivateHosts: ['127.0.0.1'] });
    target = `${internal.url}/secret`;
    const r = await request(c.url, '/v2/library/redirect/manifests/1');
    assertNoMarker(r);
    assert.equal(r.status, 502, r.text());
    assert.match(r.json().errors[0].message, /redirected to http:\/\/127\.0\.0\.1:\d+: plain http after https is not followed/);
    target = `${internal.url}/token`;
    const realm = await request(c.url, '/v2/library/realm/manifests/1');
    assertNoMarker(realm);
    assert.equal(realm.status, 502, realm.text());
    assert.deepEqual(internal.seen, []);
  } finally {
    await closer(server as unknown as http.Server)();
  }
});

test('allowPrivateHosts lets a listed host through (the CDN of a test upstream), and only it', async () => {
  // The fault front is the registry on 127.0.0.1 and its CDN on 127.0.0.2, to which it redirects
  // blobs; the stack's cache lists 127.0.0.2 in allowPrivateHosts.
  const s = await startCacheStack(); // like registry.ollama.ai: blobs redirect to the CDN host
  try {
    const m = await makeModel(s.upstream.data, { model: 'cdn', tag: 'v1' });
    const blob = `/v2/library/cdn/blobs/${m.blobs[0]!.digest}`;
    // Not listed: the CDN (a loopback address that is not the upstream's own host) is not asked.
    const unlisted = await cacheOf(s.front.url, { allowPrivateHosts: [] });
    assert.equal((await request(unlisted.url, '/v2/library/cdn/manifests/v1')).status, 200);
    const refused = await rawGet(unlisted.url, blob);
    assert.match(refused, /^HTTP\/1\.1 502 [^]*redirected to 127\.0\.0\.2:\d+, a local or private address/);
    assert.equal(s.front.requests.filter((r) => r.host === 'cdn').length, 0);
    // Listed: followed, and the bytes are the blob's.
    assert.equal((await request(s.cache.url, '/v2/library/cdn/manifests/v1')).status, 200);
    const r = await request(s.cache.url, blob);
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), m.blobs[0]!.digest);
    assert.ok(s.front.requests.some((q) => q.host === 'cdn'), 'the listed CDN host was used');
  } finally {
    await s.close();
  }
});

test("an upstream's 412 with an HTML body reaches the client as plain text, with nosniff and a CSP", async () => {
  const r = await request(cache.url, '/v2/library/gated/manifests/1');
  assert.equal(r.status, 412);
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
  // Verbatim (ollama prints it): harmless as text.
  assert.equal(r.text(), `<script>alert(document.cookie)</script>${MARKER}`);
  const head = await request(cache.url, '/v2/library/gated/manifests/1', { method: 'HEAD' });
  assert.equal(head.status, 412);
  assert.equal(head.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(head.headers['x-content-type-options'], 'nosniff');
});

test('an upstream manifest of 5 MiB is a 502 with a reason, not a 500', async () => {
  const r = await request(cache.url, '/v2/library/huge/manifests/1');
  assert.equal(r.status, 502, r.text());
  assert.equal(r.json().errors[0].code, 'UPSTREAM_FAILED');
  assert.match(r.json().errors[0].message, /answered a manifest library\/huge:1 larger than 4194304 bytes/);
});

test('a malformed or broken-off upstream answer is a 5xx with a short reason, never a 500, never the body', async () => {
  const bad = await request(cache.url, '/v2/library/garbage/manifests/1');
  assertNoMarker(bad);
  assert.equal(bad.status, 502, bad.text());
  assert.match(bad.json().errors[0].message, /answered something that is not a manifest for library\/garbage:1 \(not JSON\)/);
  const reset = await request(cache.url, '/v2/library/reset/manifests/1');
  assert.ok(reset.status === 502 || reset.status === 503, `${reset.status}: ${reset.text()}`);
  assert.match(reset.json().errors[0].message, /upstream up .* broke off the manifest library\/reset:1/);
});

test('a blob transfer that the upstream keeps breaking off is a 5xx with a reason, not a 500', async () => {
  assert.equal((await request(cache.url, '/v2/library/broken/manifests/1')).status, 200);
  const r = await request(cache.url, `/v2/library/broken/blobs/${sha(LAYER)}`);
  assert.ok(r.status === 502 || r.status === 503, `${r.status}: ${r.text()}`);
  assert.match(r.json().errors[0].message, /upstream up \(http:\/\/127\.0\.0\.2:\d+\) broke off/);
});

test('through a proxy (which resolves names itself) a name is resolved and checked before the request', async () => {
  const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY, http_proxy: process.env.http_proxy, no_proxy: process.env.no_proxy };
  try {
    delete process.env.http_proxy;
    delete process.env.no_proxy;
    // A proxy that is not there: had the redirect been let through, the answer would be a 503.
    process.env.HTTP_PROXY = 'http://127.0.0.1:9';
    process.env.NO_PROXY = '127.0.0.2';
    const c = await cacheOf(hostile.url);
    target = `http://localhost:${new URL(internal.url).port}/secret`;
    const r = await request(c.url, '/v2/library/redirect/manifests/1');
    assert.equal(r.status, 502, r.text());
    assert.match(r.json().errors[0].message, /redirected to localhost:\d+ \((127\.0\.0\.1|::1)\), a local or private address: not followed/);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  assert.deepEqual(internal.seen, []);
});

test('an upstream that does not answer, or stops in the middle, is a 503 with a reason after its timeout', async () => {
  for (const [model, why] of [['silent', /is unreachable: UND_ERR_HEADERS_TIMEOUT/], ['slow', /broke off the manifest library\/slow:1 \(UND_ERR_BODY_TIMEOUT\)/]] as const) {
    const r = await request(cache.url, `/v2/library/${model}/manifests/1`);
    assert.equal(r.status, 503, `${model}: ${r.text()}`);
    assert.match(r.json().errors[0].message, why);
  }
});

test('allowPrivateHosts in the config file: a list of hosts without ports, errors name the key', async () => {
  const dir = await tempDir();
  const file = `${dir}/config.yaml`;
  await writeFile(file, 'upstreams:\n  - url: http://10.0.0.5:8080\n    allowPrivateHosts: [cdn.office.lan, 10.0.0.7, "::1"]\n');
  assert.deepEqual(loadConfig({ file, env: {} }).upstreams[0]!.allowPrivateHosts, ['cdn.office.lan', '10.0.0.7', '::1']);
  for (const bad of ['[cdn.office.lan:8080]', '[http://x]', '5', '[""]']) {
    await writeFile(file, `upstreams:\n  - url: http://10.0.0.5:8080\n    allowPrivateHosts: ${bad}\n`);
    assert.throws(() => loadConfig({ file, env: {} }), /upstreams\[0\]\.allowPrivateHosts.*host names or IP addresses without ports/, bad);
  }
});

test('which addresses count as local: IPv4, IPv6, IPv4 inside IPv6 (mapped, NAT64, 6to4)', () => {
  const local = ['127.0.0.1', '127.8.9.10', '10.1.2.3', '100.64.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '255.255.255.255', '224.0.0.1',
    '::', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::127.0.0.1', 'fe80::1', 'fd00::1', 'fc00::1', 'ff02::1',
    '64:ff9b::7f00:1', '64:ff9b::10.0.0.1', '64:ff9b:1::1', '2002:7f00:1::1', '2002:c0a8:101::1'];
  const remote = ['8.8.8.8', '100.128.0.1', '172.32.0.1', '1.1.1.1', '::ffff:8.8.8.8', '2001:4860:4860::8888', '64:ff9b::808:808', '2002:808:808::1', 'registry.ollama.ai'];
  for (const a of local) assert.equal(isLocalAddress(a), true, a);
  for (const a of remote) assert.equal(isLocalAddress(a), false, a);
});
