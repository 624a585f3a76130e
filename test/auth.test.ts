// Authentication (protocol §6): the challenge, ollama's signed token request (replays, clocks,
// forgeries), tokens (expired, forged, wrong scope, revoked), Basic users, protected reads with
// signed blob URLs, the audit trail, and the keys/users commands.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Tokens } from '../src/auth/tokens.js';
import { request } from './support/http.js';
import { makeModel, sha256Hex } from './support/models.js';
import { makeOllamaKey, ollamaPull, signTokenRequest, type OllamaKey } from './support/ollama-client.js';
import { addUser, allowKey, basicToken, captureLog, keyToken, signedTokenRequest, tokenRequestPath } from './support/registry-auth.js';
import { MAIN, startTestRegistry, tempDir, type TestRegistry } from './support/server.js';
import { skipUnlessCI } from './support/ci.js';

const run = promisify(execFile);
let reg: TestRegistry;
let alice: OllamaKey;
const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

before(async () => {
  reg = await startTestRegistry();
  alice = makeOllamaKey();
});
after(() => reg.close());

test('/v2/ answers 200 while nobody is registered, then 401 with a Bearer challenge on the request\'s own host', async () => {
  assert.equal((await request(reg.url, '/v2/')).status, 200);
  await allowKey(reg, alice, 'team');
  const r = await request(reg.url, '/v2/');
  assert.equal(r.status, 401);
  assert.equal(r.headers['www-authenticate'], `Bearer realm="${reg.url}/v2/token",service="${reg.hostPort}"`);
  // The realm follows the Host header exactly (ollama compares host:port as a string).
  const port = new URL(reg.url).port;
  const other = await request(reg.url, '/v2/team/m/blobs/uploads/', { method: 'POST', headers: { Host: `Registry.LAN:${port}` } });
  assert.equal(other.headers['www-authenticate'], `Bearer realm="http://Registry.LAN:${port}/v2/token",service="Registry.LAN:${port}",scope="repository:team/m:pull,push"`);
  // An anonymous token (what skopeo/docker fetch first) opens the ping.
  const anon = await request(reg.url, '/v2/token?service=x');
  assert.equal(anon.status, 200);
  assert.equal((await request(reg.url, '/v2/', { headers: bearer(anon.json().token) })).status, 200);
});

test('ollama\'s signed token request: accepted once; replays, stale clocks, forgeries and changed URLs are refused', async () => {
  const scope = 'repository:team/m:pull,push';
  const nonce = 'AAAAAAAAAAAAAAAAAAAAAA';
  const ts = Math.floor(Date.now() / 1000);
  const ok = await signedTokenRequest(reg, alice, scope, { nonce, ts });
  assert.equal(ok.status, 200, ok.text());
  assert.equal(typeof ok.json().token, 'string');
  // The very same signed request again: a replay.
  const replay = await signedTokenRequest(reg, alice, scope, { nonce, ts });
  assert.equal(replay.status, 403);
  assert.match(replay.json().errors[0].message, /already used once \(a replay\)/);
  // Clocks ten minutes apart.
  for (const skew of [-600, 600]) {
    const r = await signedTokenRequest(reg, alice, scope, { ts: ts + skew });
    assert.equal(r.status, 403);
    assert.match(r.json().errors[0].message, /s (ahead of|behind) the registry's clock/);
  }
  // Signed by another key while naming alice's key.
  const mallory = makeOllamaKey();
  const p = tokenRequestPath(reg, scope);
  const forged = `${alice.publicKeyB64}:${signTokenRequest(mallory, `${reg.url}${p}`).split(':')[1]}`;
  let r = await request(reg.url, p, { headers: { Authorization: forged } });
  assert.equal(r.status, 403);
  assert.match(r.json().errors[0].message, /signature of this token request does not match/);
  // A signature for one URL sent with another (a scope widened on the way).
  const p2 = tokenRequestPath(reg, 'repository:team/m:pull');
  r = await request(reg.url, p2.replace('pull', 'pull%2Cpush'), { headers: { Authorization: signTokenRequest(alice, `${reg.url}${p2}`) } });
  assert.equal(r.status, 403);
  // Garbage.
  for (const h of ['AAAA:BBBB', `${alice.publicKeyB64}:${'A'.repeat(86)}==`, 'Bearer x', 'Digest abc']) {
    r = await request(reg.url, p, { headers: { Authorization: h } });
    assert.ok(r.status === 401 || r.status === 403, `${h} → ${r.status}`);
  }
  // None of these refusals use the words ollama rewrites.
  for (const x of [replay]) assert.doesNotMatch(x.text(), /unauthorized|access denied/i);
});

test('tokens: scoped to a repository, refused when expired, forged or revoked', async () => {
  await allowKey(reg, alice, 'team');
  const t = await keyToken(reg, alice, 'repository:team/a:pull,push');
  const post = (repo: string, h: Record<string, string>) => request(reg.url, `/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: h });
  assert.equal((await post('team/a', bearer(t))).status, 202);
  // Another repository the key may push to: a fresh token is needed (401), not a refusal.
  let r = await post('team/b', bearer(t));
  assert.equal(r.status, 401);
  assert.match(String(r.headers['www-authenticate']), /scope="repository:team\/b:pull,push"/);
  // A namespace it may not push to: 403 with the reason.
  const other = await keyToken(reg, alice, 'repository:other/b:pull,push');
  r = await post('other/b', bearer(other));
  assert.equal(r.status, 403);
  assert.match(r.json().errors[0].message, /may not push other\/b/);
  // Expired, forged (payload changed), signed with another secret.
  const tokens = reg.app.auth.tokens;
  const sub = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).sub as string;
  const expired = tokens.issue(sub, [{ type: 'repository', name: 'team/a', actions: ['pull', 'push'] }], -5).token;
  r = await post('team/a', bearer(expired));
  assert.equal(r.status, 401);
  assert.match(r.json().errors[0].message, /token expired/);
  const parts = t.split('.');
  const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString());
  claims.access = [{ type: 'repository', name: 'other/b', actions: ['push'] }];
  const tampered = `${parts[0]}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${parts[2]}`;
  r = await post('other/b', bearer(tampered));
  assert.equal(r.status, 401);
  assert.match(r.json().errors[0].message, /signature does not match/);
  const alien = new Tokens(Buffer.alloc(32, 7)).issue(sub, [{ type: 'repository', name: 'team/a', actions: ['push'] }], 60).token;
  assert.equal((await post('team/a', bearer(alien))).status, 401);
  // Removing the key ends its tokens at once (well, within the store's one-second re-read).
  await reg.app.auth.store.removeKey(alice.publicKeyLine);
  r = await post('team/a', bearer(t));
  assert.equal(r.status, 401);
  assert.match(r.json().errors[0].message, /no longer registered/);
  await allowKey(reg, alice, 'team');
});

test('users with passwords: Basic on /v2 and at the token endpoint; wrong passwords get 401', async () => {
  await addUser(reg, 'ci', 'a long password', 'team');
  assert.equal((await request(reg.url, '/v2/', { headers: basic('ci', 'a long password') })).status, 200);
  let r = await request(reg.url, '/v2/', { headers: basic('ci', 'wrong password') });
  assert.equal(r.status, 401);
  assert.match(r.json().errors[0].message, /wrong user name or password/);
  r = await request(reg.url, '/v2/token?scope=repository%3Ateam%2Fx%3Apush%2Cpull&service=s', { headers: basic('ci', 'wrong password') });
  assert.equal(r.status, 401);
  assert.equal(r.headers['www-authenticate'], 'Basic realm="ollama-registry"');
  const t = await basicToken(reg, 'ci', 'a long password', 'repository:team/x:push,pull');
  const claims = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString());
  assert.deepEqual(claims.access, [{ type: 'repository', name: 'team/x', actions: ['pull', 'push'] }]);
  assert.equal((await request(reg.url, '/v2/team/x/blobs/uploads/', { method: 'POST', headers: bearer(t) })).status, 202);
  // Passwords are stored hashed, the files are private.
  const users = await readFile(path.join(reg.data, '.ollama-registry', 'users.json'), 'utf8');
  assert.doesNotMatch(users, /a long password/);
  assert.match(users, /"password": "scrypt\$/);
  for (const f of ['users.json', 'keys.json', 'token-secret']) {
    assert.equal((await stat(path.join(reg.data, '.ollama-registry', f))).mode & 0o777, 0o600, f);
  }
});

test('protected reads: challenge on anonymous pulls, ollama pulls with its key, parts use a signed URL without Authorization', async () => {
  const data = await tempDir('oreg-private-');
  const priv = await startTestRegistry({ data, config: { auth: { anonymousRead: false, tokenTtlSeconds: 900, blobUrlTtlSeconds: 3600 } } });
  try {
    const m = await makeModel(data, { host: 'ollama-registry.local', namespace: 'team', model: 'secret', tag: '1' });
    const r = await request(priv.url, '/v2/team/secret/manifests/1');
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /scope="repository:team\/secret:pull"$/);
    const reader = makeOllamaKey();
    await allowKey(priv, reader, 'team', ['pull']);
    const dir = await tempDir('oreg-privpull-');
    const res = await ollamaPull(`${priv.hostPort}/team/secret:1`, { modelsDir: dir, key: reader });
    assert.deepEqual(await readFile(path.join(dir, 'manifests', priv.hostPort, 'team', 'secret', '1')), m.manifestBytes);
    const probe = res.requests.find((x) => x.method === 'GET' && x.status === 200 && x.url.includes('/blobs/'))!;
    const loc = new URL(String(probe.resHeaders.location));
    assert.match(loc.search, /^\?sig=\d+\.[A-Za-z0-9_-]{43}$/);
    const parts = res.requests.filter((x) => x.reqHeaders.range);
    assert.ok(parts.length > 0);
    for (const p of parts) {
      assert.equal(p.status, 206);
      assert.equal(p.reqHeaders.authorization, undefined);
      assert.ok(p.url.includes('?sig='));
    }
    // A stranger's key is refused; a tampered or expired signed URL is refused.
    await assert.rejects(ollamaPull(`${priv.hostPort}/team/secret:1`, { modelsDir: await tempDir(), key: makeOllamaKey() }), /is not registered/);
    const blobPath = loc.pathname;
    const digest = blobPath.split('/').pop()!;
    const sig = loc.searchParams.get('sig')!;
    assert.equal((await request(priv.url, `${blobPath}?sig=${sig}`, { headers: { Range: 'bytes=0-0' } })).status, 206);
    assert.equal((await request(priv.url, `${blobPath}?sig=${sig.slice(0, -2)}AA`, { headers: { Range: 'bytes=0-0' } })).status, 401);
    const old = priv.app.auth.tokens.signBlob('team', 'secret', digest, -1);
    assert.equal((await request(priv.url, `${blobPath}?sig=${old}`, { headers: { Range: 'bytes=0-0' } })).status, 401);
    // The signature is for one blob of one repository.
    const cfg = m.blobs.at(-1)!.digest;
    assert.equal((await request(priv.url, `/v2/team/secret/blobs/${cfg}?sig=${sig}`, { headers: { Range: 'bytes=0-0' } })).status, 401);
    // Listing everything needs pull on every namespace.
    assert.equal((await request(priv.url, '/v2/_catalog')).status, 401);
    const t = await keyToken(priv, reader, 'registry:catalog:*');
    assert.equal((await request(priv.url, '/v2/_catalog', { headers: bearer(t) })).status, 403);
    await addUser(priv, 'auditor', 'auditor password', '*', ['pull']);
    const c = await request(priv.url, '/v2/_catalog', { headers: basic('auditor', 'auditor password') });
    assert.deepEqual(c.json().repositories, ['team/secret']);
    // The web page's listing shows what the requester may pull: nothing to anonymous (the page
    // asks to sign in), this repository to the auditor.
    const anon = (await request(priv.url, '/api/ui/models')).json();
    assert.deepEqual([anon.models, anon.signInToRead], [[], true]);
    const ui = await request(priv.url, '/api/ui/models', { headers: basic('auditor', 'auditor password') });
    assert.deepEqual(ui.json().models.map((x: { namespace: string; model: string }) => `${x.namespace}/${x.model}`), ['team/secret']);
  } finally {
    await priv.close();
  }
});

test('the audit log has a line for every write and every refusal', async () => {
  const lines = captureLog(reg);
  await addUser(reg, 'writer', 'writer password', 'team');
  const h = basic('writer', 'writer password');
  const body = Buffer.from('audited blob');
  const d = `sha256:${sha256Hex(body)}`;
  await request(reg.url, `/v2/team/audit/blobs/uploads/?digest=${encodeURIComponent(d)}`, { method: 'POST', headers: h, body });
  const manifest = JSON.stringify({ schemaVersion: 2, layers: [{ mediaType: 'application/octet-stream', digest: d, size: body.length }] });
  assert.equal((await request(reg.url, '/v2/team/audit/manifests/v1', { method: 'PUT', headers: h, body: manifest })).status, 201);
  await request(reg.url, '/v2/team/audit/manifests/v2', { method: 'PUT', body: manifest });
  await request(reg.url, '/v2/nope/audit/manifests/v2', { method: 'PUT', headers: h, body: manifest });
  const audit = lines().filter((l) => l.audit);
  const pushed = audit.find((l) => l.audit === 'blob-pushed')!;
  assert.equal(pushed.who, 'user writer');
  assert.equal(pushed.digest, d);
  const mf = audit.find((l) => l.audit === 'manifest-pushed')!;
  assert.equal(mf.name, 'ollama-registry.local/team/audit:v1');
  const refused = audit.filter((l) => l.audit === 'refused');
  assert.deepEqual(refused.map((l) => l.status), [401, 403]);
  assert.equal(refused[1]!.path, '/v2/nope/audit/manifests/v2');
});

test('a key file that stops parsing keeps the previous keys (and says so in the log)', async () => {
  const lines = captureLog(reg);
  const file = path.join(reg.data, '.ollama-registry', 'keys.json');
  const good = await readFile(file);
  await writeFile(file, '{ not json');
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await signedTokenRequest(reg, alice, 'repository:team/m:push')).status, 200);
  assert.ok(lines().some((l) => String(l.msg).includes('does not parse')));
  await writeFile(file, good);
});

test('keys and users commands: add, list, remove; bad input exits 2', async () => {
  const data = await tempDir('oreg-cli-');
  const cli = (...args: string[]) => run(process.execPath, [MAIN, ...args, '--data', data]);
  const k = makeOllamaKey();
  const pub = path.join(data, 'id_ed25519.pub');
  await writeFile(pub, `${k.publicKeyLine}\n`);
  let out = await cli('keys', 'add', pub, '--namespace', 'team', '--namespace', 'ml', '--pull-only', '--comment', 'gpu-box');
  assert.match(out.stdout, /^added key SHA256:\S+ \(gpu-box\): team:pull ml:pull\n$/);
  out = await cli('keys', 'add', k.publicKeyLine, '--namespace', 'team', '--delete');
  assert.match(out.stdout, /^updated key SHA256:\S+ \(gpu-box\): ml:pull team:pull,push,delete\n$/);
  out = await cli('keys', 'ls', '--json');
  assert.equal(JSON.parse(out.stdout)[0].key, k.publicKeyLine);
  await Promise.all([
    assert.rejects(cli('keys', 'add', 'ssh-rsa AAAAB3Nza', '--namespace', 'team'), (e: any) => e.code === 2 && /ed25519/.test(e.stderr)),
    assert.rejects(cli('keys', 'add', k.publicKeyLine), (e: any) => e.code === 2 && /--namespace/.test(e.stderr)),
    assert.rejects(cli('keys', 'add', k.publicKeyLine, '--namespace', 'a.b'), (e: any) => e.code === 2),
  ]);
  const fp = JSON.parse(out.stdout)[0].fingerprint as string;
  out = await cli('keys', 'rm', fp);
  assert.match(out.stdout, /^removed key SHA256:/);
  const again = assert.rejects(cli('keys', 'rm', fp), (e: any) => e.code === 1 && /no such key/.test(e.stderr));
  // users add reads the password from stdin when it is not a terminal.
  const child = spawn(process.execPath, [MAIN, 'users', 'add', 'ci', '--namespace', 'team', '--data', data], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  child.stdin.end('s3cret-password\n');
  assert.equal(await new Promise((r) => child.on('exit', r)), 0);
  assert.equal(stdout, 'added user ci: team:pull,push\n');
  out = await cli('users', 'ls');
  assert.match(out.stdout, /^ci {2}team:pull,push {2}added /);
  const short = spawn(process.execPath, [MAIN, 'users', 'add', 'x', '--namespace', 'team', '--data', data], { stdio: ['pipe', 'ignore', 'ignore'] });
  short.stdin.end('short\n');
  const [code] = await Promise.all([
    new Promise((r) => short.on('exit', r)),
    again,
    cli('users', 'rm', 'ci').then((o) => assert.match(o.stdout, /^removed user ci/)),
  ]);
  assert.equal(code, 2);
});

test('files written by root (sudo keys add …) keep the owner of the state folder, so the service can read them', { skip: skipUnlessCI(process.getuid?.() !== 0 && 'needs root') }, async () => {
  const data = await tempDir('oreg-owner-');
  const { chown, mkdir } = await import('node:fs/promises');
  await mkdir(path.join(data, '.ollama-registry'), { recursive: true });
  await chown(path.join(data, '.ollama-registry'), 65534, 65534);
  await run(process.execPath, [MAIN, 'keys', 'add', makeOllamaKey().publicKeyLine, '--namespace', 'team', '--data', data]);
  const st = await stat(path.join(data, '.ollama-registry', 'keys.json'));
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o600]);
});
