// Issue 12, hole 2: one client must not be able to hold every connection. Stalled request bodies
// (headers and then nothing, or a chunked body that never ends) are cut with 408 while pulls go on;
// connections are capped in total and per address with a clear refusal; a request that needs
// credentials is refused from its headers, before any body byte is read.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { eventually } from './support/eventually.js';
import { request } from './support/http.js';
import { makeModel, sha256Hex } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { head, rawConnect, rawJson, type RawConn } from './support/raw-socket.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, withLimits, type TestRegistry } from './support/server.js';

const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });

/** `p`, or a failure saying what never happened (a bound on waiting, not a speed goal). */
async function within<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const never = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} (waited ${ms / 1000} s)`)), ms); });
  try {
    return await Promise.race([p, never]);
  } finally {
    clearTimeout(timer);
  }
}

let reg: TestRegistry;
before(async () => {
  reg = await startTestRegistry({ config: withLimits({ bodyIdleTimeoutSeconds: 0.5, requestTimeoutSeconds: 2, maxConnectionsPerAddress: 1000 }) });
  await makeModel(reg.data, { model: 'gemma2', tag: '2b', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 20_000_000, seed: 'w' }] });
  await addUser(reg, 'alice', 'pw-alice', 'team');
  await addUser(reg, 'bob', 'pw-bob', 'team', ['pull']);
});
after(() => reg.close());

test('stalled bodies (headers then nothing, endless chunked bodies) are cut with 408 while a pull completes and /healthz answers', { timeout: 120_000 }, async () => {
  const auth = basic('alice', 'pw-alice');
  const digest = `sha256:${sha256Hex('never sent')}`;
  const stalled: Array<{ kind: string; conn: RawConn }> = [];
  const open = async (kind: string, n: number, text: string) => {
    for (let i = 0; i < n; i++) stalled.push({ kind, conn: await rawConnect(reg.url, { send: text }) });
  };
  // Headers with Content-Length: 100, then nothing.
  await open('manifest PUT', 30, head('PUT', '/v2/team/m/manifests/v1', { ...auth, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': 100 }));
  await open('monolithic upload', 30, head('POST', `/v2/team/m/blobs/uploads/?digest=${digest}`, { ...auth, 'Content-Length': 100 }));
  await open('api/pull', 20, head('POST', '/api/pull', { ...auth, 'Content-Type': 'application/json', 'Content-Length': 100 }));
  await open('healthz with a body', 20, head('GET', '/healthz', { 'Content-Length': 100 }));
  // Chunked bodies that never end: a byte every 100 ms, for ever.
  const chunked = { 'Transfer-Encoding': 'chunked', 'Content-Type': 'application/json' };
  await open('endless manifest PUT', 10, head('PUT', '/v2/team/m/manifests/v2', { ...auth, ...chunked }));
  await open('endless api/pull', 10, head('POST', '/api/pull', { ...auth, ...chunked }));
  const trickle = setInterval(() => {
    for (const s of stalled) if (s.kind.startsWith('endless') && !s.conn.socket.destroyed) s.conn.socket.write('1\r\n \r\n');
  }, 100);
  try {
    // Meanwhile the registry serves.
    const modelsDir = await tempDir('oreg-client-');
    await within(ollamaPull(`${reg.hostPort}/library/gemma2:2b`, { modelsDir }), 'the pull did not complete');
    assert.equal((await request(reg.url, '/healthz')).status, 200);
    // Every stalled connection is closed by the registry, with a 408 where no answer was sent yet.
    const ends = await within(Promise.all(stalled.map((s) => s.conn.closed)), 'stalled connections were left open');
    for (const [i, text] of ends.entries()) {
      const { kind } = stalled[i]!;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      if (kind === 'healthz with a body') {
        assert.equal(status, 200, `${kind}: ${text}`);
      } else {
        assert.equal(status, 408, `${kind}: ${text}`);
        assert.equal(rawJson(text).errors[0].code, 'REQUEST_TIMEOUT');
        assert.match(text, /\r\nConnection: close\r\n/i);
      }
    }
  } finally {
    clearInterval(trickle);
    for (const s of stalled) s.conn.close();
  }
  // The cut uploads left nothing behind (their staging files and file handles are released).
  await eventually(async () => assert.deepEqual(await readdir(path.join(reg.data, '.ollama-registry', 'tmp')).catch(() => []), []));
  // A slow but moving upload is not cut: 3 parts 0.3 s apart (less than the idle timeout, more in total).
  const body = Buffer.from('slow but steady');
  const slow = await rawConnect(reg.url, { send: head('POST', `/v2/team/m/blobs/uploads/?digest=sha256:${sha256Hex(body)}`, { ...auth, 'Content-Length': body.length }) });
  for (const part of [body.subarray(0, 5), body.subarray(5, 10), body.subarray(10)]) {
    await new Promise((r) => setTimeout(r, 300));
    slow.socket.write(part);
  }
  assert.equal(await within(slow.status(), 'no answer to the slow upload'), 201);
  slow.close();
});

test('connections are capped per address (429) and in total (503), with a JSON refusal; other addresses are not held by one', { timeout: 60_000 }, async () => {
  const capped = await startTestRegistry({ config: withLimits({ maxConnections: 8, maxConnectionsPerAddress: 5 }) });
  const held: RawConn[] = [];
  try {
    for (let i = 0; i < 5; i++) held.push(await rawConnect(capped.url, { localAddress: '127.0.0.1' }));
    const sixth = await rawConnect(capped.url, { localAddress: '127.0.0.1', send: head('GET', '/healthz') });
    const refused = await within(sixth.closed, 'the connection over the per-address cap was neither refused nor closed');
    assert.match(refused, /^HTTP\/1\.1 429 /);
    assert.equal(rawJson(refused).errors[0].code, 'TOOMANYREQUESTS');
    assert.match(refused, /\r\nRetry-After: \d+\r\n/i);
    // Another address still gets in, up to the total.
    for (let i = 0; i < 3; i++) held.push(await rawConnect(capped.url, { localAddress: '127.0.0.2' }));
    const overTotal = await rawConnect(capped.url, { localAddress: '127.0.0.3', send: head('GET', '/healthz') });
    const full = await within(overTotal.closed, 'the connection over the total cap was neither refused nor closed');
    assert.match(full, /^HTTP\/1\.1 503 /);
    assert.equal(rawJson(full).errors[0].code, 'UNAVAILABLE');
    // Hanging up frees the place.
    held.shift()!.close();
    await within((async () => {
      for (;;) {
        const c = await rawConnect(capped.url, { localAddress: '127.0.0.1', send: head('GET', '/healthz', { Connection: 'close' }) });
        if (await c.status() === 200) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    })(), 'a freed place was never given to a new connection');
  } finally {
    for (const c of held) c.close();
    await capped.close();
  }
});

test('credentials and rights are checked from the headers: /api/pull, an upload PATCH and a manifest PUT are refused before their body, ' +
  'and the connection is closed', { timeout: 60_000 }, async () => {
  const cases: Array<[string, string, Record<string, string>, number]> = [
    ['POST', '/api/pull', {}, 401],
    ['POST', '/api/pull', basic('bob', 'pw-bob'), 403],
    ['POST', '/api/pull', basic('alice', 'wrong'), 401],
    ['PATCH', '/v2/team/m/blobs/uploads/0123456789abcdef', {}, 401],
    ['PUT', '/v2/team/m/manifests/v1', {}, 401],
    ['PUT', '/v2/team/m/manifests/v1', basic('bob', 'pw-bob'), 403],
  ];
  for (const [method, path, auth, want] of cases) {
    // Headers only: the body of 1000 bytes is never sent.
    const c = await rawConnect(reg.url, { send: head(method, path, { ...auth, 'Content-Type': 'application/json', 'Content-Length': 1000 }) });
    const text = await within(c.closed, `${method} ${path}: no refusal before the body, or the connection was kept open for it`);
    assert.match(text, new RegExp(`^HTTP/1\\.1 ${want} `), `${method} ${path}: ${text}`);
    assert.equal(rawJson(text).errors.length, 1);
  }
});
