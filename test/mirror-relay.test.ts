// The mirror's relay: pushes and the sign-in of an intercepted host go to its real upstream
// unchanged. The upstream here is a loopback fake standing for registry.ollama.ai that records
// what it received; the thing under test is the relay in the real server, reached as ollama
// reaches it (CONNECT through HTTPS_PROXY, TLS with the mirror's CA).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MAIN, spawnRegistry, tempDir, type SpawnedRegistry } from './support/server.js';
import { connectStatus, goRequest, goTunnel, MIRRORED } from './support/mirror.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  sha256: string;
  bytes: number;
}

const TOKEN = 'upstream-token-1';
const CHALLENGE = `Bearer realm="https://${MIRRORED}/v2/token",service="ollama",scope="repository:alice/m:push,pull"`;
let seen: Seen[] = [];
let fake: http.Server;
let reg: SpawnedRegistry;
let ca: Buffer;
let port: number;

/** registry.ollama.ai as far as a push is concerned: 401 + challenge, tokens, sessions, the 307 redirect upload. */
function fakeUpstream(req: http.IncomingMessage, res: http.ServerResponse): void {
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (c: Buffer) => {
    hash.update(c);
    bytes += c.length;
  });
  req.on('end', () => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, sha256: hash.digest('hex'), bytes });
    const p = req.url!.split('?')[0]!;
    if (p.endsWith('/stall')) return; // never answers
    if (p === '/v2/token') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token: TOKEN }));
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return void res.writeHead(401, { 'WWW-Authenticate': CHALLENGE, 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"sign in"}]}');
    }
    if (req.method === 'HEAD') return void res.writeHead(404).end();
    if (req.method === 'POST' && p.endsWith('/away')) return void res.writeHead(302, { Location: 'http://10.0.0.1/elsewhere' }).end();
    if (req.method === 'POST') return void res.writeHead(202, { Location: `https://${MIRRORED}/v2/alice/m/blobs/uploads/s1?x=1`, 'X-Upstream': 'fake' }).end();
    if (req.method === 'PATCH' && req.headers['x-redirect-uploads']) {
      return void res.writeHead(307, { Location: 'https://storage.example.net:443/presigned?sig=abc', 'Docker-Upload-Location': `https://${MIRRORED}/v2/alice/m/blobs/uploads/s2` }).end();
    }
    res.writeHead(201, { 'Docker-Content-Digest': 'sha256:00', 'X-Upstream': 'fake' }).end('created');
  });
}

before(async () => {
  fake = http.createServer(fakeUpstream).listen(0, '127.0.0.2');
  await new Promise((r) => fake.once('listening', r));
  const dir = path.join(await tempDir(), 'mirror');
  await promisify(execFile)(process.execPath, [MAIN, 'ca', 'init', '--dir', dir], { timeout: 60_000 });
  ca = await readFile(path.join(dir, 'ca.pem'));
  const cfg = path.join(await tempDir(), 'config.yaml');
  await writeFile(cfg, `upstreams:\n  - name: ollama\n    url: http://127.0.0.2:${(fake.address() as AddressInfo).port}\n    host: ${MIRRORED}\n    timeout: 2s\n` +
    `mirror:\n  dir: ${dir}\n`);
  reg = await spawnRegistry(['--config', cfg]);
  port = Number(new URL(reg.url).port);
});

after(async () => {
  await reg?.stop();
  fake?.close();
});

test('a push through the mirror reaches the upstream unchanged: 401 challenge, signed token request, session, parts, all answers passed back', async () => {
  seen = [];
  const ua = { 'User-Agent': 'ollama/0.33.0 (amd64 linux) Go/go1.26.0' };
  const first = await goRequest(port, ca, 'POST', '/v2/alice/m/blobs/uploads/', { headers: { ...ua, 'Content-Length': '0' } });
  assert.equal(first.status, 401);
  assert.equal(first.headers['www-authenticate'], CHALLENGE, 'the challenge keeps its realm on registry.ollama.ai, so ollama accepts it');
  assert.equal(first.headers['x-content-type-options'], 'nosniff');

  // The token URL is signed by the client: path and query must arrive byte for byte.
  const tokenPath = '/v2/token?nonce=AbC-d_e&scope=repository%3Aalice%2Fm%3Apush&scope=repository%3Aalice%2Fm%3Apull&service=ollama&ts=1764000000';
  const signed = 'AAAAC3NzaC1lZDI1NTE5AAAAIFake:c2lnbmF0dXJl';
  const token = await goRequest(port, ca, 'GET', tokenPath, { headers: { ...ua, Authorization: signed } });
  assert.equal(token.status, 200);
  assert.deepEqual(JSON.parse(token.body.toString()), { token: TOKEN });
  const t = seen.find((s) => s.url.startsWith('/v2/token'))!;
  assert.equal(t.url, tokenPath);
  assert.equal(t.headers.authorization, signed);
  assert.equal(t.headers['user-agent'], ua['User-Agent']);
  assert.equal(t.headers.host, MIRRORED, 'the Host the client named, as the upstream signs and builds its realm with it');

  const bearer = { ...ua, Authorization: `Bearer ${TOKEN}` };
  const session = await goRequest(port, ca, 'POST', '/v2/alice/m/blobs/uploads/', { headers: { ...bearer, 'Content-Length': '0' } });
  assert.equal(session.status, 202);
  assert.equal(session.headers.location, `https://${MIRRORED}/v2/alice/m/blobs/uploads/s1?x=1`);
  assert.equal(session.headers['x-upstream'], 'fake');

  // After sign-in ollama checks each further blob with the upstream's token: only the upstream can answer.
  const head = await goRequest(port, ca, 'HEAD', `/v2/alice/m/blobs/sha256:${'b'.repeat(64)}`, { headers: bearer });
  assert.equal(head.status, 404);
  assert.equal(seen.at(-1)?.method, 'HEAD');
  assert.equal(seen.at(-1)?.headers.authorization, `Bearer ${TOKEN}`);

  const part = randomBytes(3 << 20);
  const headers = { ...bearer, 'Content-Type': 'application/octet-stream', 'Content-Range': `0-${part.length - 1}`, 'X-Custom': 'kept' };
  const patched = await goRequest(port, ca, 'PATCH', '/v2/alice/m/blobs/uploads/s1?x=1', { headers, body: part });
  assert.equal(patched.status, 201);
  assert.equal(patched.body.toString(), 'created');
  const p = seen.find((s) => s.method === 'PATCH')!;
  assert.equal(p.url, '/v2/alice/m/blobs/uploads/s1?x=1');
  assert.equal(p.bytes, part.length);
  assert.equal(p.sha256, createHash('sha256').update(part).digest('hex'));
  for (const [k, v] of Object.entries(headers)) assert.equal(p.headers[k.toLowerCase()], v, k);
  assert.equal(p.headers['content-length'], String(part.length));
});

test('the redirect upload (307 to the storage host) reaches the client, and its host may then be tunnelled; other redirects are not relayed', async () => {
  const before = await connectStatus(port, 'storage.example.net:443');
  assert.equal(before.status, 403);
  assert.match(before.reason, /not an allowed CONNECT target/);
  const bearer = { Authorization: `Bearer ${TOKEN}`, 'X-Redirect-Uploads': '1', 'Content-Range': '0-9' };
  const r = await goRequest(port, ca, 'PATCH', '/v2/alice/m/blobs/uploads/s1', { headers: bearer, body: Buffer.alloc(10, 1) });
  assert.equal(r.status, 307);
  assert.equal(r.headers.location, 'https://storage.example.net:443/presigned?sig=abc');
  assert.equal(r.headers['docker-upload-location'], `https://${MIRRORED}/v2/alice/m/blobs/uploads/s2`);
  const afterwards = await connectStatus(port, 'storage.example.net:443');
  assert.doesNotMatch(afterwards.reason, /not an allowed CONNECT target/, 'the client PUTs the part there next');

  const away = await goRequest(port, ca, 'POST', '/v2/alice/m/away', { headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Length': '0' } });
  assert.equal(away.status, 502);
  assert.match(JSON.parse(away.body.toString()).errors[0].message, /redirected POST to http:\/\/10\.0\.0\.1, which ollama does not expect here; not relayed/);
});

test('an upstream that stalls ends in a clear 502 after its timeout; the body it got was the whole body', async () => {
  seen = [];
  const body = randomBytes(1 << 20);
  const r = await goRequest(port, ca, 'PUT', '/v2/alice/m/manifests/stall', { headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' }, body });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  const e = JSON.parse(r.body.toString()).errors[0];
  assert.equal(e.code, 'UPSTREAM_FAILED');
  assert.match(e.message, /did not answer PUT \/v2\/alice\/m\/manifests\/stall within 2 s/);
  assert.equal(seen[0]?.bytes, body.length);
});

test('a request body past the relay cap is refused with 413 before any of it goes upstream', async () => {
  seen = [];
  const socket = await goTunnel(port, ca);
  const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ createConnection: () => socket, method: 'PATCH', host: MIRRORED, path: '/v2/alice/m/blobs/uploads/s1',
      headers: { Host: MIRRORED, 'Content-Length': '2000000000', 'Content-Type': 'application/octet-stream' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.once('error', reject);
    req.write(Buffer.alloc(1024));
  });
  socket.destroy();
  assert.equal(r.status, 413);
  assert.match(JSON.parse(r.body).errors[0].message, /2000000000 bytes is larger than 1100000000; not relayed/);
  assert.equal(seen.length, 0);
});
