// The transparent mirror, offline on one machine: a CA limited to the mirrored names, TLS for
// registry.ollama.ai through CONNECT (proxy mode) and on its own port (DNS mode), served from the
// cache of a loopback upstream on 127.0.0.2, and every refusal an open relay would not make.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { makeLeaf } from '../src/mirror/ca.js';
import { MAIN, spawnRegistry, startTestRegistry, tempDir, type SpawnedRegistry, type TestRegistry } from './support/server.js';
import { cli as runCli } from './support/cli.js';
import { makeModel, type MadeModel } from './support/models.js';
import { connectStatus as connectTo, goRequest, goTunnel as tunnelTo } from './support/mirror.js';

const goGet = (p: string, headers: Record<string, string> = {}, host = HOST) => goRequest(proxyPort, ca, 'GET', p, { headers, host, tunnel: `${HOST}:443` });
const connectStatus = (target: string) => connectTo(proxyPort, target);

const run = promisify(execFile);
const HOST = 'registry.ollama.ai';
let dir: string;
let ca: Buffer;
let upstream: TestRegistry;
let model: MadeModel;
let reg: SpawnedRegistry;
let proxyPort: number;
let dnsPort: number;

/** The CLI's exit code and everything it printed. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const r = await runCli(args, { timeoutMs: 60_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

async function writeConfig(extra = ''): Promise<string> {
  const file = path.join(await tempDir(), 'config.yaml');
  await writeFile(file, `upstreams:\n  - name: ollama\n    url: ${upstream.url}\n    host: ${HOST}\n    timeout: 5s\nmirror:\n  dir: ${dir}\n  listen: 127.0.0.1:0\n${extra}`);
  return file;
}

before(async () => {
  dir = path.join(await tempDir(), 'mirror');
  const init = await cli(['ca', 'init', '--dir', dir, '--name', 'registry.lan', '--name', '127.0.0.1']);
  assert.equal(init.code, 0, init.out);
  ca = await readFile(path.join(dir, 'ca.pem'));
  upstream = await startTestRegistry({ config: { listen: { host: '127.0.0.2', port: 0 } } });
  model = await makeModel(upstream.data, { host: HOST, namespace: 'library', model: 'tiny', tag: '1', layers: [
    { mediaType: 'application/vnd.ollama.image.model', size: 3 << 20 },
    { mediaType: 'application/vnd.ollama.image.license', content: 'MIT' },
  ] });
  reg = await spawnRegistry(['--config', await writeConfig()]);
  proxyPort = Number(new URL(reg.url).port);
  const m = /"dnsMode":"https:\/\/127\.0\.0\.1:(\d+)"/.exec(reg.output());
  assert.ok(m, reg.output());
  dnsPort = Number(m[1]);
});

after(async () => {
  await reg?.stop();
  await upstream?.close();
});

test('ca init: keys are 0600, the leaf verifies, and the CA cannot vouch for another name (name constraints)', async () => {
  assert.equal((await stat(path.join(dir, 'ca.key'))).mode & 0o777, 0o600);
  assert.equal((await stat(path.join(dir, 'leaf.key'))).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  const caFile = path.join(dir, 'ca.pem');
  const ok = await run('openssl', ['verify', '-CAfile', caFile, '-verify_hostname', HOST, path.join(dir, 'leaf.pem')]);
  assert.match(ok.stdout, /OK/);
  const root = { cert: ca.toString(), key: await readFile(path.join(dir, 'ca.key'), 'utf8') };
  const evil = path.join(await tempDir(), 'evil.pem');
  await writeFile(evil, (await makeLeaf(root, ['evil.example.com'])).cert);
  await assert.rejects(run('openssl', ['verify', '-CAfile', caFile, evil]), (e: { stdout: string; stderr: string }) => /permitted subtree violation/.test(e.stdout + e.stderr));
  const again = await cli(['ca', 'init', '--dir', dir]);
  assert.equal(again.code, 2);
  assert.match(again.out, /exists; use --renew-leaf/);
});

test('proxy mode: curl --proxy pulls the manifest and a blob of registry.ollama.ai from the cache', async () => {
  const caFile = path.join(dir, 'ca.pem');
  const base = ['-sS', '--fail', '--max-time', '30', '--proxy', `http://127.0.0.1:${proxyPort}`, '--cacert', caFile];
  const mf = await run('curl', [...base, `https://${HOST}/v2/library/tiny/manifests/1`], { encoding: 'buffer' });
  assert.deepEqual(mf.stdout, model.manifestBytes);
  const blob = model.blobs[0]!;
  const b = await run('curl', [...base, `https://${HOST}/v2/library/tiny/blobs/${blob.digest}`], { encoding: 'buffer', maxBuffer: 16 << 20 });
  assert.equal(`sha256:${createHash('sha256').update(b.stdout).digest('hex')}`, blob.digest);
  const head = await run('curl', [...base, '-D', '-', '-o', '/dev/null', `https://${HOST}/v2/library/tiny/blobs/${blob.digest}`]);
  assert.match(head.stdout, /^location: https:\/\/registry\.ollama\.ai\/v2\/library\/tiny\/blobs\//mi, 'the probe points back at registry.ollama.ai, never a CDN');
  assert.match(head.stdout, /x-content-type-options: nosniff/i);
});

test('DNS mode: curl --resolve registry.ollama.ai to the TLS port gets the same manifest', async () => {
  const mf = await run('curl', ['-sS', '--fail', '--max-time', '30', '--cacert', path.join(dir, 'ca.pem'), '--resolve', `${HOST}:${dnsPort}:127.0.0.1`,
    `https://${HOST}:${dnsPort}/v2/library/tiny/manifests/1`], { encoding: 'buffer' });
  assert.deepEqual(mf.stdout, model.manifestBytes);
});

test('openssl s_client through the proxy: the chain verifies for registry.ollama.ai, ALPN picks http/1.1', async () => {
  const r = await new Promise<string>((resolve, reject) => {
    const p = execFile('openssl', ['s_client', '-proxy', `127.0.0.1:${proxyPort}`, '-connect', `${HOST}:443`, '-servername', HOST,
      '-alpn', 'h2,http/1.1', '-CAfile', path.join(dir, 'ca.pem'), '-verify_return_error', '-verify_hostname', HOST], { timeout: 20_000 }, (err, out) => (err && !out ? reject(err) : resolve(out)));
    p.stdin!.end('');
  });
  assert.match(r, /Verify return code: 0 \(ok\)/);
  assert.match(r, /ALPN protocol: http\/1\.1/);
});

test('a Go-like client through the proxy pulls the model as ollama does: manifest, HEAD, probe, ranged parts, digests checked', async () => {
  const ua = { 'User-Agent': 'ollama/0.33.0 (amd64 linux) Go/go1.26.0' };
  const mf = await goGet('/v2/library/tiny/manifests/1', { ...ua, Accept: 'application/vnd.docker.distribution.manifest.v2+json' });
  assert.equal(mf.status, 200);
  assert.deepEqual(mf.body, model.manifestBytes);
  for (const blob of model.blobs) {
    const probe = await goGet(`/v2/library/tiny/blobs/${blob.digest}`, ua);
    assert.equal(probe.status, 200);
    const loc = new URL(probe.headers.location!);
    assert.equal(loc.host, HOST);
    const parts: Buffer[] = [];
    const step = Math.max(1, Math.ceil(blob.size / 4));
    for (let start = 0; start < blob.size; start += step) {
      const end = Math.min(blob.size, start + step) - 1;
      const r = await goGet(loc.pathname, { Range: `bytes=${start}-${end}` }); // ranged parts carry no auth and our UA only
      assert.equal(r.status, 206);
      parts.push(r.body);
    }
    assert.equal(`sha256:${createHash('sha256').update(Buffer.concat(parts)).digest('hex')}`, blob.digest);
  }
});

test('CONNECT refusals: private and loopback addresses, other ports, unlisted hosts; never an open relay', async () => {
  for (const target of ['10.0.0.1:443', '127.0.0.1:443', '[::1]:443', '169.254.169.254:80', 'example.com:443', `${HOST}:80`, 'ollama.com:22']) {
    const r = await connectStatus(target);
    assert.equal(r.status, 403, `${target}: ${r.status} ${r.reason}`);
    assert.match(r.reason, /^ollama-registry: /, target);
  }
  const bad = await connectStatus('no-port');
  assert.equal(bad.status, 400);
});

test('an allow-listed tunnel target that resolves to loopback is refused after DNS resolution', async () => {
  const target = net.createServer((s) => s.end('INTERNAL SERVICE')).listen(0, '127.0.0.1');
  await new Promise((r) => target.once('listening', r));
  const port = (target.address() as net.AddressInfo).port;
  const r2 = await spawnRegistry(['--config', await writeConfig(`  tunnel: [localhost:${port}]\n`)]);
  try {
    const r = await new Promise<{ status: number; reason: string; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: Number(new URL(r2.url).port), method: 'CONNECT', path: `localhost:${port}` });
      req.once('connect', (res, socket) => {
        let body = '';
        socket.on('data', (c: Buffer) => (body += c.toString()));
        socket.on('close', () => resolve({ status: res.statusCode!, reason: res.statusMessage ?? '', body }));
      });
      req.once('error', reject);
      req.end();
    });
    assert.equal(r.status, 403);
    assert.match(r.reason, /internal address/);
    assert.doesNotMatch(r.body, /INTERNAL SERVICE/);
  } finally {
    await r2.stop();
    target.close();
  }
});

test('SNI for another name fails the handshake; a Host that differs from SNI gets 421; plain HTTP inside the tunnel gets nothing', async () => {
  await assert.rejects(tunnelTo(proxyPort, ca, `${HOST}:443`, 'evil.example.com'));
  const mis = await goGet('/v2/library/tiny/manifests/1', {}, 'registry.lan');
  assert.equal(mis.status, 421);
  assert.equal(JSON.parse(mis.body.toString()).errors[0].code, 'MISDIRECTED');
  assert.equal(mis.headers['x-content-type-options'], 'nosniff');
  const plain = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${HOST}:443` });
    req.once('connect', (_res, socket) => {
      let got = '';
      socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
      socket.on('close', () => resolve(got));
      socket.on('error', () => {});
      socket.write(`GET /v2/library/tiny/manifests/1 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    });
    req.once('error', reject);
    req.end();
  });
  assert.doesNotMatch(plain, /HTTP\/1\.1 200/);
  assert.doesNotMatch(plain, /schemaVersion/);
});

test('serve refuses a leaf for another name and an expired leaf, saying why', async () => {
  const root = { cert: ca.toString(), key: await readFile(path.join(dir, 'ca.key'), 'utf8') };
  for (const [leaf, why] of [
    [await makeLeaf(root, ['registry.lan']), /does not name registry\.ollama\.ai/],
    [await makeLeaf(root, [HOST], { notBefore: new Date(Date.now() - 30 * 86_400_000), days: 10 }), /expired/],
  ] as const) {
    const d = path.join(await tempDir(), 'm');
    await run('mkdir', ['-p', d]);
    await writeFile(path.join(d, 'leaf.pem'), leaf.cert);
    await writeFile(path.join(d, 'leaf.key'), leaf.key);
    const r = await cli(['serve', '--listen', '127.0.0.1:0', '--data', await tempDir(), '--mirror', d]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, why);
  }
});

test('client-setup: prints each OS, applies and undoes the Linux drop-in with the CA fetched from /mirror/ca.pem', async () => {
  const registry = `http://127.0.0.1:${proxyPort}`;
  const served = await fetch(`${registry}/mirror/ca.pem`);
  assert.equal(served.status, 200);
  assert.deepEqual(Buffer.from(await served.arrayBuffer()), ca);
  const web = await (await fetch(`${registry}/mirror/setup?os=windows`)).text();
  assert.match(web, /certutil -user -addstore Root/);
  assert.match(web, new RegExp(`setx HTTPS_PROXY ${registry}`));
  for (const [os, want] of [['linux', /Environment="HTTPS_PROXY=/], ['macos', /security add-trusted-cert/], ['docker', /ollama-registry-ca\.pem:\/etc\/ssl\/certs\//]] as const) {
    const r = await cli(['client-setup', '--os', os, '--registry', registry]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, want);
  }
  const dns = await cli(['client-setup', '--os', 'linux', '--mode', 'dns', '--registry', registry]);
  assert.doesNotMatch(dns.out, /HTTPS_PROXY/);
  assert.match(dns.out, /SSL_CERT_FILE/);
  const prefix = await tempDir();
  const applied = await cli(['client-setup', '--registry', registry, '--apply', '--prefix', prefix, '--no-restart']);
  assert.equal(applied.code, 0, applied.out);
  assert.deepEqual(await readFile(path.join(prefix, 'etc/ollama-registry/mirror-ca.pem')), ca);
  const dropIn = await readFile(path.join(prefix, 'etc/systemd/system/ollama.service.d/ollama-registry-mirror.conf'), 'utf8');
  assert.match(dropIn, new RegExp(`HTTPS_PROXY=${registry}`));
  assert.match(dropIn, /NO_PROXY=localhost,127\.0\.0\.1,::1,127\.0\.0\.1/);
  const undone = await cli(['client-setup', '--registry', registry, '--apply', '--uninstall', '--prefix', prefix, '--no-restart']);
  assert.equal(undone.code, 0, undone.out);
  await assert.rejects(stat(path.join(prefix, 'etc/ollama-registry/mirror-ca.pem')), { code: 'ENOENT' });
  const bad = await cli(['client-setup', '--os', 'beos', '--registry', registry]);
  assert.equal(bad.code, 2);
  assert.match(bad.out, /--os must be one of/);
});

test('doctor: all good with the proxy and the CA; says which part is wrong otherwise', async () => {
  const doctor = async (env: NodeJS.ProcessEnv) => {
    try {
      const { stdout } = await run(process.execPath, [MAIN, 'doctor', '--self'], { timeout: 60_000, env: { PATH: process.env.PATH, ...env } });
      return { code: 0, out: stdout };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, out: x.stdout + x.stderr };
    }
  };
  const proxy = `http://127.0.0.1:${proxyPort}`;
  const good = await doctor({ HTTPS_PROXY: proxy, NO_PROXY: 'localhost', SSL_CERT_FILE: path.join(dir, 'ca.pem') });
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /ok +TLS for registry\.ollama\.ai: certificate from "ollama-registry mirror CA" \(the mirror\)/);
  assert.match(good.out, /all good/);
  assert.match(good.out, /prove it end to end: ollama pull ollama-registry-selftest/);
  const excluded = await doctor({ HTTPS_PROXY: proxy, NO_PROXY: 'ollama.ai', SSL_CERT_FILE: path.join(dir, 'ca.pem') });
  assert.match(excluded.out, /NO_PROXY entry ollama\.ai covers registry\.ollama\.ai/);
  assert.equal(excluded.code, 1, excluded.out); // direct: this machine has no route to the real one
  const untrusted = await doctor({ HTTPS_PROXY: proxy });
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.out, /FAIL the certificate is not trusted .*SSL_CERT_FILE/);
  assert.match(untrusted.out, /FAIL ollama does not trust the registry's CA \(http:\/\/127\.0\.0\.1:\d+\/mirror\/ca\.pem/);
});
