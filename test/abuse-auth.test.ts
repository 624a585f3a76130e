// Issue 12, holes 3 and 7: password checks that cannot starve the server, throttled failures,
// unknown user names that cost the same work, signed token requests that cannot be replayed
// after a restart, and tokens parsed strictly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { authStoreAt } from '../src/auth/decisions.js';
import { parseKeyLine } from '../src/auth/sshkey.js';
import { FsDriver } from '../src/storage/fs.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, signTokenRequest } from './support/ollama-client.js';
import { addUser, allowKey, basicToken, captureLog, signedTokenRequest, tokenRequestPath } from './support/registry-auth.js';
import { spawnRegistry, startTestRegistry, tempDir, withLimits, type TestRegistry } from './support/server.js';

const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });

async function hashes(reg: TestRegistry): Promise<number> {
  const text = (await request(reg.url, '/metrics')).text();
  const m = /^ollama_registry_password_hashes_total (\d+)/m.exec(text);
  assert.ok(m, 'the registry reports its password hashes');
  return Number(m[1]);
}

test('a wrong-password flood: manifest GETs still answer, the flood gets 401s and then 503 "busy" instead of a growing queue', { timeout: 120_000 }, async () => {
  const reg = await startTestRegistry({ config: withLimits({ passwordQueue: 4, loginFailuresPerUser: 100_000, loginFailuresPerAddress: 100_000 }) });
  try {
    const model = await makeModel(reg.data, { model: 'gemma2', tag: '2b' });
    await addUser(reg, 'alice', 'right', 'team');
    const before = await hashes(reg);
    let stop = false;
    const seen = new Map<number, number>();
    const loop = async () => {
      while (!stop) {
        const r = await request(reg.url, '/v2/token?service=x', { headers: basic('alice', `wrong-${Math.random()}`) });
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
      }
    };
    const flood = Array.from({ length: 32 }, loop);
    try {
      for (let i = 0; i < 30; i++) {
        const r = await request(reg.url, `/v2/library/gemma2/manifests/2b`);
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, model.manifestBytes);
      }
    } finally {
      stop = true;
      await Promise.all(flood);
    }
    assert.ok((seen.get(401) ?? 0) > 0, `some wrong passwords were checked: ${[...seen]}`);
    assert.ok((seen.get(503) ?? 0) > 0, `a full queue answers 503 at once: ${[...seen]}`);
    assert.ok((await hashes(reg)) - before >= (seen.get(401) ?? 0));
  } finally {
    await reg.close();
  }
});

test('failed sign-ins: 429 with Retry-After after N per user name (from any address) and per address (for any name); audit lines', { timeout: 60_000 }, async () => {
  const reg = await startTestRegistry({ config: withLimits({ loginFailuresPerUser: 3, loginFailuresPerAddress: 5, loginLockoutSeconds: 60 }) });
  try {
    const log = captureLog(reg);
    await addUser(reg, 'alice', 'right', 'team');
    await addUser(reg, 'bob', 'right', 'team');
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(reg.url, '/v2/token?service=x', { headers: basic('alice', 'wrong'), localAddress: '127.0.0.2' })).status, 401);
    }
    // Now alice is locked, even with the right password and from another address; no scrypt is run.
    for (const path of ['/v2/token?service=x', '/v2/team/m/tags/list']) {
      const r = await request(reg.url, path, { headers: basic('alice', 'right'), localAddress: '127.0.0.3' });
      assert.equal(r.status, 429, path);
      assert.equal(r.json().errors[0].code, 'TOOMANYREQUESTS');
      assert.ok(Number(r.headers['retry-after']) > 0 && Number(r.headers['retry-after']) <= 60);
    }
    // One address guessing many names (unknown ones too) is locked after 5, for any name.
    for (let i = 0; i < 5; i++) {
      assert.equal((await request(reg.url, '/v2/token?service=x', { headers: basic(`guess${i}`, 'x'), localAddress: '127.0.0.4' })).status, 401);
    }
    assert.equal((await request(reg.url, '/v2/token?service=x', { headers: basic('bob', 'right'), localAddress: '127.0.0.4' })).status, 429);
    // bob from elsewhere is not affected.
    assert.equal((await request(reg.url, '/v2/token?service=x', { headers: basic('bob', 'right'), localAddress: '127.0.0.5' })).status, 200);
    const lines = log();
    assert.ok(lines.some((l) => l.audit === 'throttled' && l.user === 'alice'), 'the lock of a user name is in the audit log');
    assert.ok(lines.some((l) => l.audit === 'throttled' && l.ip === '127.0.0.4'), 'the lock of an address is in the audit log');
    assert.ok(lines.some((l) => l.audit === 'refused' && l.status === 429), 'each 429 is in the audit log');
  } finally {
    await reg.close();
  }
});

test('an unknown user name costs the same scrypt as a known one (a dummy hash), so timing does not tell which names exist', async () => {
  const reg = await startTestRegistry();
  try {
    await addUser(reg, 'alice', 'right', 'team');
    for (const name of ['alice', 'nobody-by-this-name']) {
      const before = await hashes(reg);
      const r = await request(reg.url, '/v2/token?service=x', { headers: basic(name, 'wrong') });
      assert.equal(r.status, 401);
      assert.equal(r.json().errors[0].message, 'wrong user name or password');
      assert.equal((await hashes(reg)) - before, 1, `one scrypt for ${name}`);
    }
  } finally {
    await reg.close();
  }
});

test('a signed token request replayed after the registry was killed and restarted is refused', { timeout: 60_000 }, async () => {
  const data = await tempDir();
  const key = makeOllamaKey();
  const k = parseKeyLine(key.publicKeyLine);
  await (await authStoreAt(new FsDriver(data))).putKey({ key: `ssh-ed25519 ${k.blob}`, fingerprint: k.fingerprint, grants: [{ namespace: 'team', actions: ['pull', 'push'] }] });
  const first = await spawnRegistry(['--data', data]);
  const port = new URL(first.url).port;
  const opts = { nonce: 'captured-nonce-0001', ts: Math.floor(Date.now() / 1000) };
  const target = { url: first.url, hostPort: first.hostPort } as TestRegistry;
  const ok = await signedTokenRequest(target, key, 'repository:team/m:pull', opts);
  assert.equal(ok.status, 200, ok.text());
  await first.stop('SIGKILL');
  // Same address, same URL, same signature: only the nonce memory can refuse it.
  const second = await spawnRegistry(['--data', data, '--listen', `127.0.0.1:${port}`]);
  try {
    assert.equal(second.url, first.url);
    const replay = await signedTokenRequest(target, key, 'repository:team/m:pull', opts);
    assert.equal(replay.status, 403, replay.text());
    assert.match(replay.json().errors[0].message, /already used once \(a replay\)/);
    // A fresh nonce still works.
    assert.equal((await signedTokenRequest(target, key, 'repository:team/m:pull')).status, 200);
  } finally {
    await second.stop();
  }
});

test('a signed token request used on one replica is refused on another replica of the same store (both running)', { timeout: 60_000 }, async () => {
  const data = await tempDir();
  const a = await startTestRegistry({ data });
  const b = await startTestRegistry({ data }); // running before the nonce is used: nothing loaded at start can know it
  try {
    const key = makeOllamaKey();
    await allowKey(a, key, 'team');
    await b.app.auth.store.refresh(true);
    // Behind one load balancer both replicas answer to one name: the same URL, the same signature.
    const signed = (nonce: string) => {
      const p = tokenRequestPath(a, 'repository:team/m:pull', { nonce, ts: Math.floor(Date.now() / 1000) });
      return { p, headers: { Authorization: signTokenRequest(key, `${a.url}${p}`), Host: a.hostPort } };
    };
    // B has served sign-ins already (what it remembers from the store is loaded), then A takes a new one.
    const earlier = signed('an-earlier-sign-in-on-b');
    assert.equal((await request(b.url, earlier.p, { headers: earlier.headers })).status, 200);
    const { p, headers } = signed('captured-on-replica-a');
    assert.equal((await request(a.url, p, { headers })).status, 200);
    const replay = await request(b.url, p, { headers });
    assert.equal(replay.status, 403, replay.text());
    assert.match(replay.json().errors[0].message, /already used once \(a replay\)/);
  } finally {
    await a.close();
    await b.close();
  }
});

test('a token with anything appended or changed is refused', async () => {
  const reg = await startTestRegistry();
  try {
    await addUser(reg, 'alice', 'right', 'team');
    const token = await basicToken(reg, 'alice', 'right', 'repository:team/m:pull');
    const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
    assert.equal((await request(reg.url, '/v2/team/m/tags/list', { headers: bearer(token) })).status, 404);
    const last = token.at(-1)!;
    // Same bytes to a lenient base64 decoder: the spare low bits of the last character.
    const sameBits = token.slice(0, -1) + 'AEIMQUYcgkosw048'.charAt(('AEIMQUYcgkosw048'.indexOf(last) + 1) % 16);
    for (const bad of [`${token}!!`, `${token}~`, `${token}=`, `${token} junk`, `${token}%00`, sameBits]) {
      const r = await request(reg.url, '/v2/team/m/tags/list', { headers: bearer(bad) });
      assert.equal(r.status, 401, `accepted: ${JSON.stringify(bad.slice(-6))}`);
    }
  } finally {
    await reg.close();
  }
});
