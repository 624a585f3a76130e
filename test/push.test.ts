// The stock ollama client's push (emulated from protocol/ollama.md §5–6) against the registry:
// ed25519-signed token requests, upload sessions with ordered PATCH parts, retried parts, the
// commit, the manifest PUT; then a pull of what was pushed, compared byte for byte.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { request } from './support/http.js';
import { makeModel, sha256File, sha256Hex, type MadeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush, type OllamaKey } from './support/ollama-client.js';
import { allowKey, keyToken } from './support/registry-auth.js';
import { MAIN, startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const run = promisify(execFile);
const PUSH_HOST = 'ollama-registry.local';
const PART = 1_000_000;

let reg: TestRegistry;
let alice: OllamaKey;
let clientDir: string;
let model: MadeModel;

/** A model in the client's models folder, named for this registry. */
function clientModel(namespace: string, name: string, tag: string, seed: string, from?: string): Promise<MadeModel> {
  return makeModel(clientDir, {
    host: reg.hostPort, namespace, model: name, tag,
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: 3_500_001, seed, from },
      { mediaType: 'application/vnd.ollama.image.template', content: `{{ .Prompt }} ${seed}`, from },
      { mediaType: 'application/vnd.ollama.image.params', content: '{"temperature":0.7}', from },
    ],
  });
}

async function storedTree(): Promise<string[]> {
  const out: string[] = [];
  for (const dir of ['blobs', 'manifests']) {
    for (const e of await readdir(path.join(reg.data, dir), { recursive: true, withFileTypes: true })) {
      if (e.isFile()) out.push(path.relative(reg.data, path.join(e.parentPath ?? (e as any).path, e.name)));
    }
  }
  return out.sort();
}

before(async () => {
  reg = await startTestRegistry();
  alice = makeOllamaKey();
  await allowKey(reg, alice, 'team');
  clientDir = await tempDir('oreg-pushclient-');
  model = await clientModel('team', 'llm', '1', 'fresh');
});
after(() => reg.close());

test('a fresh model: every blob uploaded in ordered parts, manifest stored verbatim, pulled back byte for byte', async () => {
  const res = await ollamaPush(`${reg.hostPort}/team/llm:1`, { modelsDir: clientDir, key: alice, partSize: PART });
  assert.equal(res.uploaded.length, model.blobs.length);
  // The wire: anonymous HEAD 404, POST 401 + challenge, the signed token request, then the session.
  const first = res.requests.find((r) => r.method === 'POST')!;
  assert.equal(first.status, 401);
  const realm = /realm="([^"]+)"/.exec(String(first.resHeaders['www-authenticate']))![1];
  assert.equal(realm, `http://${reg.hostPort}/v2/token`);
  const tokenReq = res.requests.find((r) => r.url.includes('/v2/token?'))!;
  assert.equal(tokenReq.status, 200);
  assert.match(tokenReq.reqHeaders.authorization!, /^AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
  const patches = res.requests.filter((r) => r.method === 'PATCH');
  assert.equal(patches.length, 4 + 3); // 3.5 MB in 1 MB parts, then template, params and config in one part each
  for (const r of res.requests.filter((x) => x.status === 202 || x.status === 201)) {
    if (r.resHeaders.location) assert.match(String(r.resHeaders.location), /^http:\/\/127\.0\.0\.1:\d+\/v2\//, 'Location is absolute');
  }
  assert.deepEqual(patches.slice(0, 4).map((p) => p.reqHeaders['content-range']), ['0-999999', '1000000-1999999', '2000000-2999999', '3000000-3500000']);
  // Stored under the push host, bytes exactly as sent.
  const stored = await readFile(path.join(reg.data, 'manifests', PUSH_HOST, 'team', 'llm', '1'));
  assert.deepEqual(stored, res.manifestBytes);
  // Pull it back into an empty models folder: same manifest, same blobs.
  const other = await tempDir('oreg-pullback-');
  await ollamaPull(`${reg.hostPort}/team/llm:1`, { modelsDir: other });
  assert.deepEqual(await readFile(path.join(other, 'manifests', reg.hostPort, 'team', 'llm', '1')), res.manifestBytes);
  for (const b of model.blobs) {
    const name = `sha256-${b.digest.slice(7)}`;
    assert.deepEqual(await readFile(path.join(other, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)), b.digest);
  }
});

test('a model whose blobs already exist uploads nothing (HEAD finds them), only the manifest', async () => {
  const again = await clientModel('team', 'llm', '2', 'fresh');
  const res = await ollamaPush(`${reg.hostPort}/team/llm:2`, { modelsDir: clientDir, key: alice, partSize: PART });
  assert.equal(res.uploaded.length, 0);
  assert.equal(res.skipped.length, again.blobs.length);
  assert.equal(res.requests.filter((r) => r.method === 'PATCH').length, 0);
  const put = res.requests.filter((r) => r.method === 'PUT');
  assert.equal(put.at(-1)!.status, 201);
  assert.equal(put.at(-1)!.resHeaders['docker-content-digest'], `sha256:${sha256Hex(res.manifestBytes)}`);
});

test('mount from another repository: POST ?mount&from answers 201 for a known blob, 202 for an unknown one', async () => {
  // A model made FROM another one pushes no bytes: its first (anonymous) HEAD is challenged (401),
  // ollama signs in and asks again, and every HEAD, signed in, counts as a mount.
  const derived = await clientModel('team', 'derived', '1', 'fresh', `${reg.hostPort}/team/llm:1`);
  const res = await ollamaPush(`${reg.hostPort}/team/derived:1`, { modelsDir: clientDir, key: alice, partSize: PART });
  assert.equal(res.uploaded.length, 0);
  assert.equal(res.skipped.length, derived.blobs.length);
  assert.equal(res.requests.filter((r) => r.method === 'HEAD')[0]!.status, 401);
  // The POST itself, as ollama sends it for a layer with `from`.
  const token = await keyToken(reg, alice, 'repository:team/derived:pull,push');
  const known = model.blobs[0]!.digest;
  const r = await request(reg.url, `/v2/team/derived/blobs/uploads/?from=team%2Fllm&mount=${encodeURIComponent(known)}`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 201);
  assert.equal(r.headers['docker-content-digest'], known);
  assert.match(String(r.headers.location), /^http:\/\//);
  const unknown = `sha256:${'7'.repeat(64)}`;
  const r2 = await request(reg.url, `/v2/team/derived/blobs/uploads/?from=nobody%2Fnothing&mount=${encodeURIComponent(unknown)}`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r2.status, 202);
  assert.match(String(r2.headers.location), /^http:\/\/127\.0\.0\.1:\d+\/v2\/team\/derived\/blobs\/uploads\/[0-9a-f-]{36}$/);
});

test('a retried PATCH (same Content-Range, same URL) is accepted; the blob is intact', async () => {
  const m = await clientModel('team', 'retry', '1', 'retried');
  const res = await ollamaPush(`${reg.hostPort}/team/retry:1`, { modelsDir: clientDir, key: alice, partSize: PART, retryPatchOnce: { digest: m.blobs[0]!.digest, part: 2 } });
  const patches = res.requests.filter((r) => r.method === 'PATCH' && r.reqHeaders['content-range'] === '2000000-2999999');
  assert.equal(patches.length, 2, 'part 2 was sent twice');
  assert.equal(patches[0]!.url, patches[1]!.url);
  assert.deepEqual(patches.map((p) => p.status), [202, 202]);
  for (const b of m.blobs) assert.equal(await sha256File(path.join(reg.data, 'blobs', `sha256-${b.digest.slice(7)}`)), b.digest);
});

test('a push without a key is refused, and nothing is stored', async () => {
  const m = await clientModel('team', 'nokey', '1', 'nokey');
  const before = await storedTree();
  await assert.rejects(ollamaPush(`${reg.hostPort}/team/nokey:1`, { modelsDir: clientDir, partSize: PART }), /id_ed25519: no such file or directory/);
  // The anonymous POST got a challenge, not a session.
  const r = await request(reg.url, '/v2/team/nokey/blobs/uploads/', { method: 'POST' });
  assert.equal(r.status, 401);
  assert.match(String(r.headers['www-authenticate']), /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/v2\/token",service="[^"]+",scope="repository:team\/nokey:pull,push"$/);
  assert.deepEqual(await storedTree(), before);
  assert.ok(m);
});

test('a key not on the list is refused with a message that says how to register it', async () => {
  const stranger = makeOllamaKey();
  await clientModel('team', 'stranger', '1', 'stranger');
  const before = await storedTree();
  const err = await ollamaPush(`${reg.hostPort}/team/stranger:1`, { modelsDir: clientDir, key: stranger, partSize: PART }).then(() => null, (e: Error) => e);
  assert.ok(err);
  assert.match(err.message, /^403: .*is not registered on this registry; to allow it, run on the registry: ollama-registry keys add 'ssh-ed25519 AAAA[^']+' --namespace team"\}\]\}$/);
  assert.ok(err.message.includes(stranger.publicKeyB64), 'the message carries the key to paste');
  assert.deepEqual(await storedTree(), before);
  // Pasted as ollama prints it (the raw JSON body) into a shell, the command registers the key.
  const pasted = /run on the registry: (ollama-registry keys add .*?)"\}\]\}$/.exec(err.message)?.[1];
  assert.ok(pasted, err.message);
  const data = await tempDir();
  await run('bash', ['-c', `ollama-registry() { "${process.execPath}" "${MAIN}" "$@"; }\n${pasted}`], { env: { ...process.env, OLLAMA_REGISTRY_DATA: data, OLLAMA_REGISTRY_CONFIG: '' } });
  const { stdout } = await run(process.execPath, [MAIN, 'keys', 'ls', '--json', '--data', data]);
  const keys = JSON.parse(stdout) as Array<{ key: string; grants: Array<{ namespace: string }> }>;
  assert.equal(keys.length, 1);
  assert.equal(keys[0]!.key, `ssh-ed25519 ${stranger.publicKeyB64}`);
  assert.equal(keys[0]!.grants[0]!.namespace, 'team');
});

test('a namespace the key may not write is refused (403 with its grants), a pull-only key cannot push', async () => {
  await clientModel('elsewhere', 'llm', '1', 'elsewhere');
  const before = await storedTree();
  const err = await ollamaPush(`${reg.hostPort}/elsewhere/llm:1`, { modelsDir: clientDir, key: alice, partSize: PART }).then(() => null, (e: Error) => e);
  assert.match(err!.message, /^403: .*may not push elsewhere\/llm \(it has: team:pull,push\)/);
  const reader = makeOllamaKey();
  await allowKey(reg, reader, 'team', ['pull']);
  await clientModel('team', 'ro', '1', 'readonly');
  const err2 = await ollamaPush(`${reg.hostPort}/team/ro:1`, { modelsDir: clientDir, key: reader, partSize: PART }).then(() => null, (e: Error) => e);
  assert.match(err2!.message, /^403: .*may not push team\/ro \(it has: team:pull\)/);
  assert.deepEqual(await storedTree(), before);
});

test('keys added with the CLI take effect in the running server without a restart', async () => {
  const bob = makeOllamaKey();
  await clientModel('team', 'bob', '1', 'bob');
  await assert.rejects(ollamaPush(`${reg.hostPort}/team/bob:1`, { modelsDir: clientDir, key: bob, partSize: PART }), /is not registered/);
  const { stdout } = await run(process.execPath, [MAIN, 'keys', 'add', `${bob.publicKeyLine} bob@laptop`, '--namespace', 'team', '--data', reg.data]);
  assert.match(stdout, /added key SHA256:\S+ \(bob@laptop\): team:pull,push/);
  await new Promise((r) => setTimeout(r, 1100)); // the server re-reads the record at most once a second
  const res = await ollamaPush(`${reg.hostPort}/team/bob:1`, { modelsDir: clientDir, key: bob, partSize: PART });
  assert.equal(res.uploaded.length > 0, true);
  await run(process.execPath, [MAIN, 'keys', 'rm', bob.publicKeyLine, '--data', reg.data]);
  await new Promise((r) => setTimeout(r, 1100));
  await assert.rejects(ollamaPush(`${reg.hostPort}/team/bob:1`, { modelsDir: clientDir, key: bob, partSize: PART }), /is not registered/);
});

test('tags ollama reserves (local, cloud, *-cloud) are refused', async () => {
  for (const tag of ['local', 'cloud', 'big-cloud']) {
    await clientModel('team', 'llm', tag, 'fresh');
    await assert.rejects(ollamaPush(`${reg.hostPort}/team/llm:${tag}`, { modelsDir: clientDir, key: alice, partSize: PART }), /^Error: 400: .*TAG_INVALID.*reserved/);
  }
});
