// Every response, good or bad, says X-Content-Type-Options: nosniff and carries a restrictive
// Content-Security-Policy: the registry's origin also serves the web catalog and /v2/token, so
// nothing it answers (an error's text, a model's files, an upstream's words) may run as script.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { request, type RawResponse } from './support/http.js';
import { makeModel, type MadeModel } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let m: MadeModel;

before(async () => {
  reg = await startTestRegistry();
  m = await makeModel(reg.data, { model: 'gemma2', tag: '2b' });
  // With a user, /v2/ and writes answer 401.
  await addUser(reg, 'alice', 'right-password', 'team');
});
after(() => reg.close());

function assertSafe(what: string, r: { status: number; headers: Record<string, unknown> }): void {
  assert.equal(r.headers['x-content-type-options'], 'nosniff', `${what} (${r.status}): nosniff`);
  const csp = String(r.headers['content-security-policy'] ?? '');
  assert.match(csp, /default-src 'none'/, `${what} (${r.status}): CSP ${csp}`);
  assert.match(csp, /frame-ancestors 'none'/, `${what} (${r.status}): CSP ${csp}`);
}

test('nosniff and a CSP on every route, good and bad', async () => {
  const layer = m.blobs[0]!;
  const manifest = '/v2/library/gemma2/manifests/2b';
  const got = await request(reg.url, manifest);
  const cases: Array<[string, string, Parameters<typeof request>[2]?, number?]> = [
    ['page', '/', undefined, 200],
    ['script', '/ui/app.js'],
    ['style', '/ui/app.css', undefined, 200],
    ['v2 ping (401 once users exist)', '/v2/', undefined, 401],
    ['manifest', manifest, undefined, 200],
    ['manifest HEAD', manifest, { method: 'HEAD' }, 200],
    ['manifest 304', manifest, { headers: { 'If-None-Match': String(got.headers.etag) } }, 304],
    ['blob', `/v2/library/gemma2/blobs/${layer.digest}`, undefined, 200],
    ['blob HEAD', `/v2/library/gemma2/blobs/${layer.digest}`, { method: 'HEAD' }, 200],
    ['blob range', `/v2/library/gemma2/blobs/${layer.digest}`, { headers: { Range: 'bytes=0-9' } }, 206],
    ['blob bad range', `/v2/library/gemma2/blobs/${layer.digest}`, { headers: { Range: 'bytes=999999999-' } }, 416],
    ['unknown manifest', '/v2/library/nope/manifests/1', undefined, 404],
    ['unknown endpoint', '/nope', undefined, 404],
    ['bad name', '/v2/Library/../x/manifests/1'],
    ['push without credentials', '/v2/team/x/manifests/1', { method: 'PUT', body: '{}' }, 401],
    ['token with a wrong password', '/v2/token?scope=repository:team/x:push', { headers: { Authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` } }, 401],
    ['metrics', '/metrics', undefined, 200],
    ['healthz', '/healthz', undefined, 200],
    ['readyz', '/readyz', undefined, 200],
    ['web API', '/api/ui/models', undefined, 200],
    ['web API error', '/api/ui/model?host=x', undefined, 400],
    ['pull API without credentials', '/api/pull', { method: 'POST', body: '{"name":"x"}' }],
  ];
  for (const [what, path, opts, status] of cases) {
    const r: RawResponse = await request(reg.url, path, opts);
    if (status !== undefined) assert.equal(r.status, status, `${what}: ${r.text().slice(0, 200)}`);
    assertSafe(what, r);
  }
});

test('a request the HTTP parser refuses still gets nosniff and a CSP', async () => {
  const { port } = new URL(reg.url);
  const raw = await new Promise<string>((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1', () => s.end('BREW /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n'));
    let out = '';
    s.on('data', (b) => (out += b.toString()));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400 /);
  const headers = Object.fromEntries(raw.split('\r\n\r\n')[0]!.split('\r\n').slice(1).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  }));
  assertSafe('malformed request', { status: 400, headers });
});
