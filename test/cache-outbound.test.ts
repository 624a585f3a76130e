// The registry's own outbound traffic: an HTTPS upstream trusted through an extra CA file, and
// HTTP_PROXY/NO_PROXY honoured (a CONNECT proxy written here counts what goes through it).
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { upstreamConfig } from './support/cache.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';
import { makeLocalCert } from './support/tls.js';

test('an HTTPS upstream with a private CA: trusted with `ca`, refused (clearly) without', async () => {
  const dir = await tempDir();
  const { cert, key } = await makeLocalCert(dir);
  const upstream = await startTestRegistry({ config: { tls: { cert, key } } });
  const m = await makeModel(upstream.data, { model: 'secure', tag: 'v1' });
  const trusting = await startTestRegistry({ config: upstreamConfig(upstream.url, { ca: cert }) });
  const plain = await startTestRegistry({ config: upstreamConfig(upstream.url) });
  try {
    assert.match(upstream.url, /^https:/);
    const r = await request(trusting.url, '/v2/library/secure/manifests/v1');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, m.manifestBytes);
    const blob = await request(trusting.url, `/v2/library/secure/blobs/${m.blobs[0]!.digest}`);
    assert.equal(blob.status, 200);
    const refused = await request(plain.url, '/v2/library/secure/manifests/v1');
    assert.equal(refused.status, 503);
    assert.match(refused.json().errors[0].message, /upstream up \(https:.*\) is unreachable: .*(SELF_SIGNED|self[- ]signed|UNABLE_TO_VERIFY)/i);
  } finally {
    for (const r of [trusting, plain]) {
      await r.app.cache?.close();
      await r.close();
    }
    await upstream.close();
  }
});

/** A forward proxy: CONNECT tunnels and absolute-form requests, counted. */
async function startProxy(): Promise<{ url: string; used: () => number; close(): Promise<void> }> {
  let used = 0;
  const srv = http.createServer((req, res) => {
    used++;
    const u = new URL(req.url!);
    const up = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode!, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  srv.on('connect', (req, sock, head) => {
    used++;
    const [host, port] = req.url!.split(':');
    const up = net.connect(Number(port), host, () => {
      sock.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
  });
  const sockets = new Set<net.Socket>();
  srv.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    used: () => used,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      srv.close(() => r());
    }),
  };
}

test('HTTP_PROXY is used for upstream requests, and NO_PROXY bypasses it', async () => {
  const upstream = await startTestRegistry();
  const m = await makeModel(upstream.data, { model: 'proxied', tag: 'v1' });
  const proxy = await startProxy();
  const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY, http_proxy: process.env.http_proxy, no_proxy: process.env.no_proxy };
  const regs = [];
  try {
    delete process.env.http_proxy;
    delete process.env.no_proxy;
    process.env.HTTP_PROXY = proxy.url;
    delete process.env.NO_PROXY;
    const viaProxy = await startTestRegistry({ config: upstreamConfig(upstream.url) });
    regs.push(viaProxy);
    const r = await request(viaProxy.url, '/v2/library/proxied/manifests/v1');
    assert.equal(r.status, 200);
    assert.equal((await request(viaProxy.url, `/v2/library/proxied/blobs/${m.blobs[0]!.digest}`)).status, 200);
    assert.ok(proxy.used() >= 1, 'the proxy carried the upstream traffic');
    const before = proxy.used();
    process.env.NO_PROXY = '127.0.0.1';
    const direct = await startTestRegistry({ config: upstreamConfig(upstream.url) });
    regs.push(direct);
    assert.equal((await request(direct.url, '/v2/library/proxied/manifests/v1')).status, 200);
    assert.equal(proxy.used(), before, 'NO_PROXY hosts are reached directly');
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    for (const r of regs) {
      await r.app.cache?.close();
      await r.close();
    }
    await proxy.close();
    await upstream.close();
  }
});
