// The web catalog's JSON API (/api/ui/*) and its assets, through real HTTP on loopback.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { defaults } from '../src/config.js';
import { parsePolicy } from '../src/auth/rules.js';
import { cli } from './support/cli.js';
import { request } from './support/http.js';
import { makeModel, type MadeModel } from './support/models.js';
import { basicToken, addUser } from './support/registry-auth.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
const made: Record<string, MadeModel> = {};
const MODEL = 'application/vnd.ollama.image.model';
const LICENSE = 'application/vnd.ollama.image.license';
const TEMPLATE = 'application/vnd.ollama.image.template';
const SYSTEM = 'application/vnd.ollama.image.system';
const PARAMS = 'application/vnd.ollama.image.params';
const HUGE = 3 * 1024 * 1024;
const ODD_TAG = `Q4_K_M-${'x'.repeat(73)}`; // 80 characters, the longest valid tag

/** A GGUF v3 header prefix: general.architecture, a tokenizer array, then <arch>.context_length. */
function ggufHeader(arch: string, ctx: number): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); parts.push(b); };
  const u64 = (n: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); parts.push(b); };
  const str = (s: string) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF'));
  u32(3);
  u64(0);
  u64(4);
  str('general.architecture'); u32(8); str(arch);
  str('tokenizer.ggml.tokens'); u32(9); u32(8); u64(3); str('<s>'); str('</s>'); str('hi');
  str('general.file_type'); u32(4); u32(15);
  str(`${arch}.context_length`); u32(4); u32(ctx);
  parts.push(Buffer.alloc(64)); // the tensor infos would follow
  return Buffer.concat(parts);
}

const api = (p: string) => request(reg.url, p);
const details = (host: string, namespace: string, model: string, tag?: string) =>
  api(`/api/ui/model?${new URLSearchParams({ host, namespace, model, ...(tag ? { tag } : {}) })}`);
const blobFile = (digest: string) => path.join(reg.data, 'blobs', `sha256-${digest.slice(7)}`);

before(async () => {
  reg = await startTestRegistry();
  made.gemma2b = await makeModel(reg.data, {
    model: 'gemma2', tag: '2b', config: { model_family: 'gemma2', model_type: '2.6B', file_type: 'Q4_0' },
    layers: [
      { mediaType: MODEL, content: ggufHeader('gemma2', 8192) },
      { mediaType: TEMPLATE, content: '<start_of_turn>user\n{{ .Prompt }}<end_of_turn>' },
      { mediaType: SYSTEM, content: 'You are terse.' },
      { mediaType: PARAMS, content: '{"stop":["<end_of_turn>","<eos>"],"num_ctx":4096}' },
      { mediaType: LICENSE, content: 'Gemma Terms of Use' },
      { mediaType: LICENSE, content: 'Second license' },
    ],
  });
  made.gemmaLatest = await makeModel(reg.data, { model: 'gemma2', tag: 'latest', config: { context_length: 131072 } });
  made.shadowed = await makeModel(reg.data, { host: 'other.example', model: 'gemma2', tag: '2b' });
  made.hf = await makeModel(reg.data, { host: 'hf.co', namespace: 'bartowski', model: 'Llama-3.2-1B-Instruct-GGUF', tag: 'Q4_K_M', config: { model_type: '1.2B', file_type: 'Q4_K_M' } });
  made.port = await makeModel(reg.data, { host: '10.0.0.5:8080', namespace: 'team', model: 'mine', tag: 'v1' });
  made.odd = await makeModel(reg.data, { namespace: '_a-b_c', model: '_qwen2.5-coder.v1_', tag: ODD_TAG });
  made.mixed = await makeModel(reg.data, { namespace: 'Team', model: 'MixedCase', tag: 'V1' });
  for (const tag of ['27b', '9b', 'latest', '2b']) await makeModel(reg.data, { model: 'natural', tag });
  // A model whose config blob is gone (its config is unique, so no other model shares the blob).
  made.noConfig = await makeModel(reg.data, { model: 'noconfig', config: { model_type: 'unique-no-config' } });
  await rm(blobFile(made.noConfig.blobs.at(-1)!.digest));
  // A huge license, cut mid-way through a 3-byte character.
  made.huge = await makeModel(reg.data, { model: 'huge', layers: [{ mediaType: MODEL, size: 100 }, { mediaType: LICENSE, content: '€'.repeat(HUGE / 3) }] });
  // A model layer that is missing.
  made.gone = await makeModel(reg.data, { model: 'gone', layers: [{ mediaType: MODEL, size: 4321, seed: 'gone' }] });
  await rm(blobFile(made.gone.blobs[0]!.digest));
  // Names ollama's grammar refuses are not models: skipped, not shown.
  for (const bad of ['<img src=x onerror=alert(1)>', 'has space']) {
    await mkdir(path.join(reg.data, 'manifests', 'registry.ollama.ai', 'library', bad), { recursive: true });
    await writeFile(path.join(reg.data, 'manifests', 'registry.ollama.ai', 'library', bad, 'latest'), made.gemmaLatest.manifestBytes);
  }
  // A manifest that is not JSON still shows, with the problem.
  await mkdir(path.join(reg.data, 'manifests', 'registry.ollama.ai', 'library', 'broken'), { recursive: true });
  await writeFile(path.join(reg.data, 'manifests', 'registry.ollama.ai', 'library', 'broken', 'latest'), '{not json');
  await utimes(made.hf.manifestPath, new Date('2024-05-06T07:08:09Z'), new Date('2024-05-06T07:08:09Z'));
});
after(() => reg.close());

function find(models: any[], host: string, namespace: string, model: string) {
  const m = models.find((x) => x.host === host && x.namespace === namespace && x.model === model);
  assert.ok(m, `${host}/${namespace}/${model} is listed`);
  return m;
}

const sizeOf = (m: MadeModel) => m.blobs.reduce((n, b) => n + b.size, 0);

test('the catalog lists every model of every host folder with its tags, size, details and source', async () => {
  const r = await api('/api/ui/models');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers['cache-control'], 'no-store');
  const body = r.json();
  assert.deepEqual(body.features, { prefetch: false, delete: false, signIn: false });
  const keys = body.models.map((m: any) => `${m.host}/${m.namespace}/${m.model}`).sort();
  assert.deepEqual(keys, [
    '10.0.0.5:8080/team/mine', 'hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF', 'other.example/library/gemma2',
    'registry.ollama.ai/Team/MixedCase', 'registry.ollama.ai/_a-b_c/_qwen2.5-coder.v1_', 'registry.ollama.ai/library/broken',
    'registry.ollama.ai/library/gemma2', 'registry.ollama.ai/library/gone', 'registry.ollama.ai/library/huge',
    'registry.ollama.ai/library/natural', 'registry.ollama.ai/library/noconfig',
  ]);
  const gemma = find(body.models, 'registry.ollama.ai', 'library', 'gemma2');
  assert.deepEqual(gemma.source, { kind: 'upstream', label: 'registry.ollama.ai' });
  // 'latest' first, then natural order.
  assert.deepEqual(gemma.tags.map((t: any) => t.tag), ['latest', '2b']);
  assert.deepEqual(find(body.models, 'registry.ollama.ai', 'library', 'natural').tags.map((t: any) => t.tag), ['latest', '2b', '9b', '27b']);
  const t2b = gemma.tags[1];
  assert.equal(t2b.size, sizeOf(made.gemma2b));
  assert.equal(t2b.family, 'gemma2');
  assert.equal(t2b.parameterSize, '2.6B');
  assert.equal(t2b.quantization, 'Q4_0');
  assert.equal(t2b.digest, made.gemma2b.manifestDigest);
  assert.equal(t2b.id, made.gemma2b.manifestDigest.slice(7, 19));
  assert.equal(t2b.shadowedBy, null);
  assert.equal(t2b.configMissing, false);
  assert.equal(t2b.missingBlobs, 0);
  assert.equal(gemma.tags[0].contextLength, 131072);
  // Distinct blobs of both tags.
  const distinct = new Map([...made.gemma2b.blobs, ...made.gemmaLatest.blobs].map((b) => [b.digest, b.size]));
  assert.equal(gemma.size, [...distinct.values()].reduce((a, b) => a + b, 0));
  // The same name in a later host folder is shadowed by the lookup rule.
  const other = find(body.models, 'other.example', 'library', 'gemma2');
  assert.equal(other.tags[0].shadowedBy, 'registry.ollama.ai');
  assert.deepEqual(other.source, { kind: 'upstream', label: 'other.example' });
  const hf = find(body.models, 'hf.co', 'bartowski', 'Llama-3.2-1B-Instruct-GGUF');
  assert.equal(hf.tags[0].modified, '2024-05-06T07:08:09.000Z');
  assert.equal(hf.modified, '2024-05-06T07:08:09.000Z');
  assert.equal(hf.tags[0].quantization, 'Q4_K_M');
  assert.equal(find(body.models, '10.0.0.5:8080', 'team', 'mine').tags[0].tag, 'v1');
  assert.ok(body.disk.bytes > HUGE && body.disk.blobs > 10);
  assert.ok(body.disk.free === null || body.disk.free > 0);
});

test('a model with a missing config blob, or a missing layer, or a broken manifest still shows', async () => {
  const body = (await api('/api/ui/models')).json();
  const nc = find(body.models, 'registry.ollama.ai', 'library', 'noconfig').tags[0];
  assert.equal(nc.configMissing, true);
  assert.equal(nc.missingBlobs, 1);
  assert.equal(nc.family, null);
  assert.equal(nc.size, sizeOf(made.noConfig));
  const gone = find(body.models, 'registry.ollama.ai', 'library', 'gone').tags[0];
  assert.equal(gone.missingBlobs, 1);
  assert.equal(gone.configMissing, false);
  const broken = find(body.models, 'registry.ollama.ai', 'library', 'broken').tags[0];
  assert.match(broken.problem, /not valid JSON/);

  const d = (await details('registry.ollama.ai', 'library', 'noconfig')).json();
  assert.equal(d.tag.tag, 'latest');
  assert.equal(d.config.present, false);
  assert.deepEqual(d.config.values, {});
  assert.equal(d.texts.licenses[0].text, 'Test license, do what you like.');
  const g = (await details('registry.ollama.ai', 'library', 'gone')).json();
  assert.equal(g.layers[0].present, false);
  assert.equal(g.contextLength, null);
  const b = await details('registry.ollama.ai', 'library', 'broken');
  assert.equal(b.status, 200);
  assert.equal(b.json().layers.length, 0);
});

test('model details: config, context length, layers, template, system, parameters, licenses, digests', async () => {
  const r = await details('registry.ollama.ai', 'library', 'gemma2', '2b');
  assert.equal(r.status, 200);
  const d = r.json();
  assert.equal(d.model.tags.length, 2);
  assert.equal(d.manifest.digest, made.gemma2b.manifestDigest);
  assert.equal(d.manifest.id, made.gemma2b.manifestDigest.slice(7, 19));
  assert.equal(d.manifest.size, made.gemma2b.manifestBytes.length);
  assert.equal(d.config.digest, made.gemma2b.blobs.at(-1)!.digest);
  assert.equal(d.config.values.model_family, 'gemma2');
  assert.deepEqual(d.contextLength, { value: 8192, from: 'model file' });
  assert.deepEqual(d.layers.map((l: any) => l.kind), ['model', 'template', 'system', 'params', 'license', 'license']);
  assert.equal(d.texts.template.text, '<start_of_turn>user\n{{ .Prompt }}<end_of_turn>');
  assert.equal(d.texts.system.text, 'You are terse.');
  assert.deepEqual(d.texts.params.values, { stop: ['<end_of_turn>', '<eos>'], num_ctx: 4096 });
  assert.deepEqual(d.texts.licenses.map((l: any) => l.text), ['Gemma Terms of Use', 'Second license']);
  // The config's own context_length wins over the model file's header.
  const latest = (await details('registry.ollama.ai', 'library', 'gemma2')).json();
  assert.equal(latest.tag.tag, 'latest');
  assert.deepEqual(latest.contextLength, { value: 131072, from: 'config' });
  // A shadowed copy says which folder answers instead.
  const other = (await details('other.example', 'library', 'gemma2', '2b')).json();
  assert.equal(other.tag.shadowedBy, 'registry.ollama.ai');
  assert.equal(other.model.host, 'other.example');
});

test('a huge license is capped (whole characters), with its full size', async () => {
  const r = await details('registry.ollama.ai', 'library', 'huge');
  assert.equal(r.status, 200);
  assert.ok(r.body.length < 200_000, `response is ${r.body.length} bytes`);
  const lic = r.json().texts.licenses[0];
  assert.equal(lic.truncated, true);
  assert.equal(lic.size, HUGE);
  assert.ok(lic.text.length > 20_000 && lic.text.length <= 65_536 / 3);
  assert.match(lic.text, /^€+$/);
});

test('odd but valid names: host with a port, leading underscores, dots, an 80-character tag, mixed case', async () => {
  for (const [host, ns, model, tag, m] of [
    ['10.0.0.5:8080', 'team', 'mine', 'v1', made.port],
    ['registry.ollama.ai', '_a-b_c', '_qwen2.5-coder.v1_', ODD_TAG, made.odd],
    ['registry.ollama.ai', 'Team', 'MixedCase', 'V1', made.mixed],
    ['hf.co', 'bartowski', 'Llama-3.2-1B-Instruct-GGUF', 'Q4_K_M', made.hf],
  ] as const) {
    const r = await details(host, ns, model, tag);
    assert.equal(r.status, 200, `${host}/${ns}/${model}:${tag}`);
    const d = r.json();
    assert.equal(d.model.host, host);
    assert.equal(d.model.namespace, ns);
    assert.equal(d.model.model, model);
    assert.equal(d.tag.tag, tag);
    assert.equal(d.manifest.digest, m.manifestDigest);
  }
});

test('bad and unknown names: 400 NAME_INVALID, 404 with a one-line message; only GET and HEAD', async () => {
  for (const q of ['host=registry.ollama.ai&namespace=library&model=..%2F..%2Fsecret', 'host=a%2Fb&namespace=library&model=gemma2',
    'host=registry.ollama.ai&namespace=library&model=%3Cscript%3E', 'host=registry.ollama.ai&namespace=library', '']) {
    const r = await api(`/api/ui/model?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal(r.json().errors[0].code, 'NAME_INVALID');
  }
  const tag = await api('/api/ui/model?host=registry.ollama.ai&namespace=library&model=gemma2&tag=bad%20tag');
  assert.equal(tag.json().errors[0].code, 'TAG_INVALID');
  const unknown = await details('registry.ollama.ai', 'library', 'nope');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json().errors[0].code, 'NAME_UNKNOWN');
  const noTag = await details('registry.ollama.ai', 'library', 'gemma2', 'nope');
  assert.equal(noTag.status, 404);
  assert.equal(noTag.json().errors[0].code, 'MANIFEST_UNKNOWN');
  assert.doesNotMatch(noTag.text(), /\n/);
  const post = await request(reg.url, '/api/ui/models', { method: 'POST', body: '{}' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  const head = await request(reg.url, '/api/ui/models', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
});

test('the page and its assets are served by the registry, with a script-blocking CSP and ETags', async () => {
  const page = await api('/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
  assert.doesNotMatch(page.text(), /https?:\/\//); // nothing from outside: works offline
  for (const [p, type] of [['/ui/app.js', /javascript/], ['/ui/model.js', /javascript/], ['/ui/actions.js', /javascript/], ['/ui/util.js', /javascript/], ['/ui/bytes.js', /javascript/], ['/ui/app.css', /css/], ['/ui/favicon.svg', /svg/]] as const) {
    const r = await api(p);
    assert.equal(r.status, 200, p);
    assert.match(String(r.headers['content-type']), type);
    assert.doesNotMatch(r.text(), /https?:\/\/(?!www\.w3\.org)/, `${p} loads nothing from outside`);
    const again = await request(reg.url, p, { headers: { 'If-None-Match': String(r.headers.etag) } });
    assert.equal(again.status, 304, p);
  }
  assert.equal((await api('/ui/nope.js')).status, 404);
});

test('the page offers sign-in only when the registry has a user to sign in as', async () => {
  const r = await startTestRegistry({ config: { allowDelete: true } });
  try {
    const features = async () => (await request(r.url, '/api/ui/models')).json().features;
    // Deleting is on, but nobody could sign in: no "Sign in" button on a registry without users.
    assert.deepEqual(await features(), { prefetch: false, delete: { url: '/v2/{namespace}/{model}/manifests/{tag}' }, signIn: false });
    await addUser(r, 'admin', 'admin password', '*', ['pull', 'push', 'delete']);
    assert.deepEqual((await features()).signIn, { tokenUrl: '/v2/token' });
  } finally {
    await r.close();
  }
});

test('an empty registry has an empty catalog', async () => {
  const empty = await startTestRegistry();
  try {
    const body = (await request(empty.url, '/api/ui/models')).json();
    assert.deepEqual(body.models, []);
    assert.equal(body.disk.bytes, 0);
  } finally {
    await empty.close();
  }
});

test('the catalog lists only what the requester may pull (rights, then policy rules); disk use stays the whole store\'s', async () => {
  const policy = parsePolicy([{ name: 'no-secret', deny: 'pull', names: 'team/secret*' }]);
  const priv = await startTestRegistry({ config: { policy, auth: { ...defaults().auth, anonymousRead: false } } });
  let open: TestRegistry | undefined;
  try {
    await makeModel(priv.data, { model: 'gemma2', tag: '2b' });
    await makeModel(priv.data, { namespace: 'team', model: 'tool', tag: 'v1' });
    await makeModel(priv.data, { namespace: 'Team', model: 'secret', tag: 'v1' });
    await makeModel(priv.data, { host: 'hf.co', namespace: 'bartowski', model: 'phi', tag: 'Q4_K_M' });
    await addUser(priv, 'alice', 'pw-alice', 'team', ['pull']);
    await addUser(priv, 'root', 'pw-root', '*', ['pull', 'push']);
    const files = await readdir(path.join(priv.data, 'blobs'));
    const disk = { bytes: (await Promise.all(files.map(async (f) => (await stat(path.join(priv.data, 'blobs', f))).size))).reduce((a, b) => a + b, 0), blobs: files.length };
    const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
    const list = async (base: string, headers: Record<string, string> = {}) => {
      const r = await request(base, '/api/ui/models', { headers });
      assert.equal(r.status, 200, r.text());
      const b = r.json();
      assert.deepEqual({ bytes: b.disk.bytes, blobs: b.disk.blobs }, disk, 'the disk figures are the whole store\'s, for everyone');
      return { names: b.models.map((m: any) => `${m.namespace}/${m.model}`).sort(), signInToRead: b.signInToRead, features: b.features };
    };
    const one = (base: string, namespace: string, model: string, headers: Record<string, string> = {}) =>
      request(base, `/api/ui/model?${new URLSearchParams({ host: namespace === 'bartowski' ? 'hf.co' : 'registry.ollama.ai', namespace, model })}`, { headers });

    // Reads need credentials: anonymous sees nothing and is asked to sign in.
    assert.deepEqual(await list(priv.url), { names: [], signInToRead: true, features: { prefetch: false, delete: false, signIn: { tokenUrl: '/v2/token' } } });
    // alice may pull in team only; team/secret is refused by the policy for everyone.
    assert.deepEqual((await list(priv.url, basic('alice', 'pw-alice'))).names, ['team/tool']);
    const aliceAny = (await request(priv.url, '/v2/token', { headers: basic('alice', 'pw-alice') })).json().token as string;
    assert.deepEqual((await list(priv.url, { Authorization: `Bearer ${aliceAny}` })).names, ['team/tool']);
    // A token scoped to other repositories (an OCI tool's) lists only what it covers.
    const scoped = await basicToken(priv, 'root', 'pw-root', 'repository:library/gemma2:pull');
    assert.deepEqual((await list(priv.url, { Authorization: `Bearer ${scoped}` })).names, ['library/gemma2']);
    const root = await list(priv.url, basic('root', 'pw-root'));
    assert.deepEqual(root, { names: ['bartowski/phi', 'library/gemma2', 'team/tool'], signInToRead: false, features: { prefetch: false, delete: false, signIn: { tokenUrl: '/v2/token' } } });
    // Wrong credentials are refused, not treated as anonymous.
    const wrong = await request(priv.url, '/api/ui/models', { headers: basic('alice', 'nope') });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json().errors[0].message, 'wrong user name or password');

    // A model's page is gated like a pull of it.
    assert.equal((await one(priv.url, 'team', 'tool')).status, 401);
    assert.equal((await one(priv.url, 'team', 'tool', basic('alice', 'pw-alice'))).status, 200);
    const other = await one(priv.url, 'library', 'gemma2', basic('alice', 'pw-alice'));
    assert.equal(other.status, 403);
    assert.match(other.json().errors[0].message, /^user alice may not pull library\/gemma2/);
    const secret = await request(priv.url, `/api/ui/model?${new URLSearchParams({ host: 'registry.ollama.ai', namespace: 'Team', model: 'secret' })}`, { headers: basic('root', 'pw-root') });
    assert.equal(secret.status, 403);
    assert.match(secret.json().errors[0].message, /refused by policy rule "no-secret"/);

    // Anonymous reads (the default) on the same store: everything but what the policy refuses.
    await priv.close();
    open = await startTestRegistry({ data: priv.data, config: { policy } });
    assert.deepEqual(await list(open.url), { names: ['bartowski/phi', 'library/gemma2', 'team/tool'], signInToRead: false, features: { prefetch: false, delete: false, signIn: false } });
    assert.equal((await one(open.url, 'bartowski', 'phi')).status, 200);
    assert.equal((await request(open.url, `/api/ui/model?${new URLSearchParams({ host: 'registry.ollama.ai', namespace: 'Team', model: 'secret' })}`)).status, 403);
  } finally {
    await open?.close();
    await priv.close().catch(() => {});
  }
});

test('the page and ls agree on the push host folder: its name compares without case, and it is never a cache', async () => {
  // Once the page said "from pushed.example" (an upstream) for a folder ls and gc took for the push host.
  const pushHost = 'Pushed.Example';
  const own = await startTestRegistry({ config: { pushHost, storage: { ...defaults().storage, cachedHosts: ['pushed.example'] } } });
  try {
    await makeModel(own.data, { host: 'pushed.example', namespace: 'team', model: 'mine', tag: 'v1' });
    const page = find((await request(own.url, '/api/ui/models')).json().models, 'pushed.example', 'team', 'mine');
    assert.deepEqual(page.source, { kind: 'pushed', label: 'pushed' });
    const env = { ...process.env, OLLAMA_REGISTRY_PUSH_HOST: pushHost, OLLAMA_REGISTRY_CACHED_HOSTS: 'pushed.example' };
    const ls = await cli(['ls', '--json', '--data', own.data], { env });
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(JSON.parse(ls.stdout).models.map((m: any) => [m.name, m.source]), [['pushed.example/team/mine:v1', 'local']]);
  } finally {
    await own.close();
  }
});
