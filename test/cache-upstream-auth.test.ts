// The cache signs in to an upstream that wants credentials: the upstream is a second instance of
// our own server with protected reads, and the cache is an ollama machine to it (its own ed25519
// key, registered upstream with `keys add`), or a user with a password.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { formatPrivateKey, parsePrivateKey, publicKeyBlob } from '../src/auth/openssh.js';
import { goEncodeQuery } from '../src/upstream/key.js';
import { upstreamConfig } from './support/cache.js';
import { hasDistribution, pushToDistribution, startDistribution } from './support/distribution.js';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel, type MadeModel } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { goEncodeValues } from './support/ollama-http.js';
import { addUser, captureLog } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';
import { IN_CI, skipUnlessCI } from './support/ci.js';

const MiB = 1 << 20;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
// Under CI ssh-keygen must be there (scripts/test.sh installs it): its absence fails the tests below.
const hasSshKeygen = IN_CI || spawnSync('ssh-keygen', ['-?']).error === undefined;
let upstream: TestRegistry;
let model: MadeModel;
const open: TestRegistry[] = [];

async function startCache(extra: Record<string, unknown> = {}, config: Record<string, unknown> = {}): Promise<TestRegistry> {
  const c = await startTestRegistry({ config: { ...upstreamConfig(upstream.url, extra), ...config } });
  open.push(c);
  return c;
}

async function pullAndCheck(cache: TestRegistry): Promise<void> {
  const modelsDir = await tempDir();
  await ollamaPull(`${cache.hostPort}/team/secret:1`, { modelsDir, partSize: 1 * MiB });
  for (const b of model.blobs) assert.equal(sha(await readFile(path.join(modelsDir, 'blobs', `sha256-${b.digest.slice(7)}`))), b.digest);
}

/** What ollama prints for a failed pull from the cache; must name the upstream and why, and is no 401. */
async function assertRefused(cache: TestRegistry, why: RegExp): Promise<string> {
  const r = await request(cache.url, '/v2/team/secret/manifests/1');
  assert.equal(r.status, 502, 'an upstream refusal is not the cache asking the client to sign in');
  const msg = r.json().errors[0].message as string;
  assert.match(msg, /upstream up \(http:\/\/127\.0\.0\.1:\d+\)/);
  assert.match(msg, why);
  // ollama replaces errors containing these words with a message that hides the reason.
  assert.doesNotMatch(msg, /unauthori[sz]ed|access denied/i);
  await assert.rejects(ollamaPull(`${cache.hostPort}/team/secret:1`, { modelsDir: await tempDir() }), (e: Error) => {
    assert.match(e.message, /^pull model manifest: 502: .*upstream up/);
    assert.doesNotMatch(e.message, /unauthori[sz]ed|access denied/i);
    return true;
  });
  return msg;
}

before(async () => {
  upstream = await startTestRegistry({ config: { auth: { anonymousRead: false, tokenTtlSeconds: 900, blobUrlTtlSeconds: 3600 } } });
  model = await makeModel(upstream.data, { host: 'ollama-registry.local', namespace: 'team', model: 'secret', tag: '1', layers: [
    { mediaType: 'application/vnd.ollama.image.model', size: 3 * MiB },
    { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
  ] });
});
after(async () => {
  for (const c of open) {
    await c.app.cache?.close();
    await c.close();
  }
  await upstream.close();
});

test('keys own makes the key (0600) and prints a line keys add accepts upstream; the cache then pulls with it', async () => {
  const cache = await startCache();
  const own = await cli(['keys', 'own', '--data', cache.data]);
  assert.equal(own.code, 0, own.stderr);
  assert.match(own.stdout, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43}\n$/);
  assert.match(own.stderr, /made a new key/);
  const file = path.join(cache.data, '.ollama-registry', 'id_ed25519');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.match(await readFile(file, 'utf8'), /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  // Asking again prints the same key and makes nothing.
  const again = await cli(['keys', 'own', '--data', cache.data]);
  assert.equal(again.stdout, own.stdout);
  assert.equal(again.stderr, '');
  const add = await cli(['keys', 'add', own.stdout.trim(), '--namespace', 'team', '--pull-only', '--comment', 'branch cache', '--data', upstream.data]);
  assert.equal(add.code, 0, add.stderr);
  await upstream.app.auth.store.refresh(true);
  const log = captureLog(upstream);
  await pullAndCheck(cache);
  // The upstream saw the cache's key: signed token requests, no anonymous sign-in.
  const tokens = log().filter((l) => l.audit === 'token');
  assert.ok(tokens.length >= 1);
  for (const t of tokens) assert.match(String(t.who), /branch cache/);
});

test('a key the upstream does not know: a clear error naming the upstream, the key and the fix', async () => {
  const cache = await startCache();
  const msg = await assertRefused(cache, /refused this registry's key SHA256:\S+ \(403: this machine's key SHA256:\S+ is not registered on this registry/);
  assert.match(msg, /ollama-registry keys own/);
  // The key was made on this first need, 0600, and is the one named in the message.
  const own = await cli(['keys', 'own', '--data', cache.data]);
  assert.equal(own.stderr, '');
  assert.ok(msg.includes(own.stdout.trim().split(' ')[1]!), 'the upstream tells the admin which key line to add');
  assert.equal((await stat(path.join(cache.data, '.ollama-registry', 'id_ed25519'))).mode & 0o777, 0o600);
});

test('a key registered upstream for another namespace: refused after signing in, with the reason', async () => {
  const cache = await startCache();
  const own = await cli(['keys', 'own', '--data', cache.data]);
  assert.equal((await cli(['keys', 'add', own.stdout.trim(), '--namespace', 'elsewhere', '--data', upstream.data])).code, 0);
  await upstream.app.auth.store.refresh(true);
  await assertRefused(cache, /refused GET \/v2\/team\/secret\/manifests\/1 \(403: .*may not pull team\/secret.*\), after signing in with this registry's key/);
});

test('a user name and password for the upstream (Basic at its token endpoint); a wrong one is a clear error', async () => {
  await addUser(upstream, 'branch', 'a long password', 'team', ['pull']);
  const good = await startCache({ username: 'branch', password: 'a long password' });
  await pullAndCheck(good);
  assert.equal(existsSync(path.join(good.data, '.ollama-registry', 'id_ed25519')), false, 'no key is made when a user is configured');
  const bad = await startCache({ name: 'up', username: 'branch', password: 'wrong' });
  const msg = await assertRefused(bad, /refused user branch \(401: wrong user name or password\): no token for repository:team\/secret:pull; check the username and password/);
  assert.doesNotMatch(msg, /wrong"|a long password/);
});

test('docker-registry with htpasswd (Basic on every request): pulled with the configured user; a wrong password is a clear error',
  { skip: skipUnlessCI(!hasDistribution() && 'docker-registry is not installed (apt-get install docker-registry)') }, async () => {
  const data = await tempDir('oreg-dist-');
  const src = await tempDir();
  const m = await makeModel(src, { model: 'basic', tag: 'v1', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 2 * MiB }] });
  // Filled while open, then served with htpasswd on the same storage.
  const plain = await startDistribution({ data });
  await pushToDistribution(plain.url, 'library/basic', 'v1', src, m.manifestBytes);
  await plain.close();
  // bcrypt of "U*U": a published crypt_blowfish test vector (cost 5, so checks are quick).
  const dist = await startDistribution({ data, htpasswd: 'branch:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n' });
  try {
    const up = upstreamConfig(dist.url, { username: 'branch', password: 'U*U' });
    const cache = await startTestRegistry({ config: up });
    open.push(cache);
    const modelsDir = await tempDir();
    await ollamaPull(`${cache.hostPort}/library/basic:v1`, { modelsDir, partSize: 1 * MiB });
    for (const b of m.blobs) assert.equal(sha(await readFile(path.join(modelsDir, 'blobs', `sha256-${b.digest.slice(7)}`))), b.digest);
    const bad = await startTestRegistry({ config: upstreamConfig(dist.url, { username: 'branch', password: 'nope' }) });
    open.push(bad);
    const r = await request(bad.url, '/v2/library/basic/manifests/v1');
    assert.equal(r.status, 502);
    const msg = r.json().errors[0].message as string;
    assert.match(msg, /upstream up .* refused GET \/v2\/library\/basic\/manifests\/v1 \(401: .*\), after signing in with user branch/);
    assert.doesNotMatch(msg, /unauthori[sz]ed|access denied|nope/i);
    const none = await startTestRegistry({ config: upstreamConfig(dist.url) });
    open.push(none);
    assert.match((await request(none.url, '/v2/library/basic/manifests/v1')).json().errors[0].message, /asks for a user name and password \(Basic\); set username and password/);
  } finally {
    await dist.close();
  }
});

test('upstreamKey: an existing ollama or ssh-keygen key file is used as it is; a missing one is an error naming the setting', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'id_ed25519');
  if (hasSshKeygen) {
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', file]).status, 0);
  } else {
    t.diagnostic('ssh-keygen not installed: using a key written by this registry');
    await writeFile(file, formatPrivateKey(generateKeyPairSync('ed25519').privateKey), { mode: 0o600 });
  }
  const line = `ssh-ed25519 ${publicKeyBlob(parsePrivateKey(await readFile(file, 'utf8')))}`;
  if (hasSshKeygen) assert.equal((await readFile(`${file}.pub`, 'utf8')).trim(), line);
  const cache = await startCache({}, { upstreamKey: file });
  const own = await cli(['keys', 'own', '--data', cache.data, '--config', await configFile(dir, `upstreamKey: ${file}\n`)]);
  assert.equal(own.stdout.trim(), line);
  assert.equal((await cli(['keys', 'add', line, '--namespace', 'team', '--pull-only', '--data', upstream.data])).code, 0);
  await upstream.app.auth.store.refresh(true);
  await pullAndCheck(cache);
  await assert.rejects(startCache({}, { upstreamKey: path.join(dir, 'missing') }), /upstreamKey: cannot read the key .*missing: no such file/);
  await assert.rejects(startCache({ key: path.join(dir, 'missing') }), /upstreams\[0\]\.key: cannot read the key/);
});

test('keys written by the registry are OpenSSH keys that ssh-keygen reads', { skip: skipUnlessCI(!hasSshKeygen && 'ssh-keygen not installed') }, async () => {
  const dir = await tempDir();
  const r = await cli(['keys', 'own', '--data', dir]);
  const out = spawnSync('ssh-keygen', ['-y', '-f', path.join(dir, '.ollama-registry', 'id_ed25519')]);
  assert.equal(out.status, 0, out.stderr.toString());
  assert.equal(out.stdout.toString().trim(), r.stdout.trim());
});

async function configFile(dir: string, text: string): Promise<string> {
  const f = path.join(dir, 'config.yaml');
  await writeFile(f, text);
  return f;
}

test('the signed token URL is encoded as ollama encodes it (Go url.Values.Encode)', () => {
  const pairs: Array<[string, string]> = [['service', '10.0.0.5:8080'], ['scope', 'repository:team/m:pull'], ['scope', ''], ['ts', '1700000000'],
    ['nonce', 'Ab-_0123456789abcdefgh'], ['extra', "a b!'()*~.é/?&="], ['Service', 'x']];
  assert.equal(goEncodeQuery(pairs), goEncodeValues(pairs));
  assert.equal(goEncodeQuery([['scope', 'repository:a/b:pull'], ['nonce', 'x y']]), 'nonce=x+y&scope=repository%3Aa%2Fb%3Apull');
});
