// OCI 1.1 parts of the registry API with raw requests: manifests pushed by digest only (and gc
// of them), reads of invalid tags, OCI error codes for unknown endpoints, Content-Type of
// manifests without mediaType, the referrers API and blob DELETE.
import assert from 'node:assert/strict';
import { access, readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runGc } from '../src/registry/housekeeping/gc.js';
import { startCacheStack } from './support/cache.js';
import { cli } from './support/cli.js';
import { request, type RawResponse } from './support/http.js';
import { makeOciImage, pushOciLayout } from './support/oci-image.js';
import { sha256Hex } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
const AUTH = { Authorization: `Basic ${Buffer.from('oci:oci password').toString('base64')}` };
const digestOf = (b: Buffer | string) => `sha256:${sha256Hex(b)}`;
const exists = (p: string) => access(p).then(() => true, () => false);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

before(async () => {
  reg = await startTestRegistry({ config: { allowDelete: true } });
  await addUser(reg, 'oci', 'oci password', 'team', ['pull', 'push', 'delete']);
});
after(() => reg.close());

function call(p: string, method = 'GET', headers: Record<string, string | number> = {}, body?: Buffer | string): Promise<RawResponse> {
  return request(reg.url, p, { method, headers: { ...AUTH, ...headers }, body });
}

async function blob(content: string): Promise<{ digest: string; size: number }> {
  const b = Buffer.from(content);
  const r = await call(`/v2/team/img/blobs/uploads/?digest=${digestOf(b)}`, 'POST', {}, b);
  assert.equal(r.status, 201, r.text());
  return { digest: digestOf(b), size: b.length };
}

/** An OCI image manifest *without* mediaType, as umoci writes them. */
async function image(seed: string, extra: Record<string, unknown> = {}): Promise<Buffer> {
  const config = await blob(`{"architecture":"amd64","os":"linux","seed":"${seed}"}`);
  const layer = await blob(`layer ${seed}`);
  return Buffer.from(JSON.stringify({
    schemaVersion: 2, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }], ...extra,
  }));
}

function assertError(r: RawResponse, status: number, code: string): void {
  assert.equal(r.status, status, r.text());
  assert.equal(r.json().errors[0].code, code);
  assert.doesNotMatch(r.json().errors[0].message, /\n/);
}

test('a manifest PUT by digest is stored untagged (bytes as its blob, the models folder stays valid), read by digest, deleted by digest', async () => {
  const m = await image('untagged');
  const d = digestOf(m);
  assertError(await call(`/v2/team/img/manifests/${digestOf('other')}`, 'PUT', { 'Content-Type': OCI_MANIFEST }, m), 400, 'DIGEST_INVALID');
  const put = await call(`/v2/team/img/manifests/${d}`, 'PUT', { 'Content-Type': OCI_MANIFEST }, m);
  assert.equal(put.status, 201, put.text());
  assert.equal(put.headers['docker-content-digest'], d);
  const get = await call(`/v2/team/img/manifests/${d}`);
  assert.equal(get.status, 200);
  assert.deepEqual(get.body, m);
  assert.equal(get.headers['content-type'], OCI_MANIFEST, 'no mediaType: inferred from the shape, not docker v2s2');
  assert.equal((await call(`/v2/TEAM/Img/manifests/${d}`, 'HEAD')).status, 200, 'names match case-insensitively');
  assert.equal((await call(`/v2/team/other/manifests/${d}`)).status, 404, 'only in the repository it was pushed to');
  assert.ok(await exists(path.join(reg.data, 'blobs', `sha256-${d.slice(7)}`)));
  assert.deepEqual(await readdir(path.join(reg.data, 'manifests')).catch(() => []), [], 'no tag appears in the ollama layout');
  assert.equal((await call(`/v2/team/img/manifests/${d}`, 'DELETE')).status, 202);
  assertError(await call(`/v2/team/img/manifests/${d}`), 404, 'MANIFEST_UNKNOWN');
});

test('invalid tags: reads 404 MANIFEST_UNKNOWN, PUT 400 TAG_INVALID; tags up to 128 characters; unknown /v2 endpoints have an OCI code', async () => {
  const m = await image('tags');
  for (const method of ['GET', 'HEAD', 'DELETE']) {
    const r = await call('/v2/team/img/manifests/.INVALID_MANIFEST_NAME', method);
    assert.equal(r.status, 404, method);
    if (method !== 'HEAD') assert.equal(r.json().errors[0].code, 'MANIFEST_UNKNOWN');
  }
  assertError(await call('/v2/team/img/manifests/.INVALID_MANIFEST_NAME', 'PUT', {}, m), 400, 'TAG_INVALID');
  const long = `v${'x'.repeat(127)}`;
  assert.equal((await call(`/v2/team/img/manifests/${long}`, 'PUT', { 'Content-Type': OCI_MANIFEST }, m)).status, 201);
  assert.deepEqual((await call(`/v2/team/img/manifests/${long}`)).body, m);
  assertError(await call(`/v2/team/img/manifests/${long}x`, 'PUT', {}, m), 400, 'TAG_INVALID');
  assertError(await call('/v2/team/img/nothing/here'), 404, 'NAME_UNKNOWN');
  const blobPost = await call('/v2/_catalog', 'DELETE');
  assertError(blobPost, 405, 'UNSUPPORTED');
  assert.doesNotMatch(blobPost.json().errors[0].message, /does not accept pushes/);
});

test('referrers: OCI-Subject on PUT, the index of referrers, artifactType filter with OCI-Filters-Applied', async () => {
  const subject = await image('subject');
  assert.equal((await call('/v2/team/img/manifests/1', 'PUT', { 'Content-Type': OCI_MANIFEST }, subject)).status, 201);
  const sd = { mediaType: OCI_MANIFEST, digest: digestOf(subject), size: subject.length };
  const empty = await blob('{}');
  const sig = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.sig',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty }, layers: [{ mediaType: 'application/vnd.example.sig', ...empty }],
    subject: sd, annotations: { 'org.example': 'a' },
  }));
  const sbom = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.example.sbom', ...empty }, layers: [], subject: sd }));
  for (const m of [sig, sbom]) {
    const r = await call(`/v2/team/img/manifests/${digestOf(m)}`, 'PUT', { 'Content-Type': OCI_MANIFEST }, m);
    assert.equal(r.status, 201, r.text());
    assert.equal(r.headers['oci-subject'], sd.digest);
  }
  const all = await call(`/v2/team/img/referrers/${sd.digest}`);
  assert.equal(all.status, 200);
  assert.equal(all.headers['content-type'], OCI_INDEX);
  const idx = all.json();
  assert.equal(idx.mediaType, OCI_INDEX);
  assert.deepEqual(idx.manifests.map((x: { digest: string }) => x.digest).sort(), [digestOf(sig), digestOf(sbom)].sort());
  const s = idx.manifests.find((x: { digest: string }) => x.digest === digestOf(sig));
  assert.deepEqual(s, { mediaType: OCI_MANIFEST, digest: digestOf(sig), size: sig.length, artifactType: 'application/vnd.example.sig', annotations: { 'org.example': 'a' } });
  const filtered = await call(`/v2/team/img/referrers/${sd.digest}?artifactType=application/vnd.example.sbom`);
  assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
  assert.deepEqual(filtered.json().manifests.map((x: { digest: string }) => x.digest), [digestOf(sbom)]);
  const none = await call(`/v2/team/img/referrers/${digestOf('nothing refers to this')}`);
  assert.equal(none.status, 200);
  assert.deepEqual(none.json().manifests, []);
});

test('blob DELETE: 202 for an unused blob with the delete right, refused while a manifest uses it, 403 without the right', async () => {
  const m = await image('del');
  const parsed = JSON.parse(m.toString());
  assert.equal((await call('/v2/team/img/manifests/del', 'PUT', { 'Content-Type': OCI_MANIFEST }, m)).status, 201);
  const used = await call(`/v2/team/img/blobs/${parsed.layers[0].digest}`, 'DELETE');
  assertError(used, 403, 'DENIED');
  assert.match(used.json().errors[0].message, /still used by a manifest/);
  await addUser(reg, 'reader', 'reader password', 'team', ['pull', 'push']);
  const loose = await blob('nobody uses me');
  const noRight = await request(reg.url, `/v2/team/img/blobs/${loose.digest}`, { method: 'DELETE', headers: { Authorization: `Basic ${Buffer.from('reader:reader password').toString('base64')}` } });
  assert.equal(noRight.status, 403);
  assert.equal((await call(`/v2/team/img/blobs/${loose.digest}`, 'DELETE')).status, 202);
  assertError(await call(`/v2/team/img/blobs/${loose.digest}`), 404, 'BLOB_UNKNOWN');
  assertError(await call(`/v2/team/img/blobs/${loose.digest}`, 'DELETE'), 404, 'BLOB_UNKNOWN');
});

test('blob DELETE with allowDelete off: 405 saying so', async () => {
  const off = await startTestRegistry({ data: await tempDir() });
  try {
    await addUser(off, 'oci', 'oci password', 'team', ['pull', 'push', 'delete']);
    const r = await request(off.url, `/v2/team/img/blobs/${digestOf('x')}`, { method: 'DELETE', headers: AUTH });
    assertError(r, 405, 'UNSUPPORTED');
    assert.match(r.json().errors[0].message, /allowDelete/);
  } finally {
    await off.close();
  }
});

test('gc keeps an untagged manifest an index or a subject refers to, and removes an unreferenced one after the grace period', async () => {
  const child = await image('gc-child');
  const loose = await image('gc-loose');
  const ref = await image('gc-referrer', { subject: { mediaType: OCI_MANIFEST, digest: digestOf(child), size: child.length } });
  for (const m of [child, loose, ref]) assert.equal((await call(`/v2/team/gc/manifests/${digestOf(m)}`, 'PUT', { 'Content-Type': OCI_MANIFEST }, m)).status, 201);
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: digestOf(child), size: child.length, platform: { os: 'linux', architecture: 'amd64' } }],
  }));
  assert.equal((await call('/v2/team/gc/manifests/multi', 'PUT', { 'Content-Type': OCI_INDEX }, index)).status, 201);
  await sleep(1100); // everything older than the 1 s grace period
  const r = await runGc(reg.app, { graceMs: 1000 });
  assert.deepEqual(r.untaggedRemoved, [`ollama-registry.local/team/gc@${digestOf(loose)}`]);
  const gone = await call(`/v2/team/gc/manifests/${digestOf(loose)}`);
  assert.equal(gone.status, 404, `${gone.text()} ${JSON.stringify(await readdir(path.join(reg.data, '.ollama-registry/untagged'), { recursive: true }))}`);
  for (const m of [child, ref]) assert.deepEqual((await call(`/v2/team/gc/manifests/${digestOf(m)}`)).body, m, 'kept by the index / by its subject');
  const childLayer = JSON.parse(child.toString()).layers[0].digest;
  assert.equal((await call(`/v2/team/gc/blobs/${childLayer}`, 'HEAD')).status, 200, "the child's layers stay");
  assert.equal((await call(`/v2/team/gc/blobs/${JSON.parse(loose.toString()).layers[0].digest}`, 'HEAD')).status, 404, "the loose one's layer went");
});

test('a docker manifest list: accepted once its children are here, served verbatim with its type', async () => {
  const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
  const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
  const children: Buffer[] = [];
  for (const arch of ['amd64', 'arm64']) {
    const config = await blob(`{"architecture":"${arch}","os":"linux"}`);
    const layer = await blob(`docker layer ${arch}`);
    children.push(Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: DOCKER_V2, config: { mediaType: 'application/vnd.docker.container.image.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', ...layer }],
    })));
  }
  const list = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: DOCKER_LIST,
    manifests: children.map((c, i) => ({ mediaType: DOCKER_V2, digest: digestOf(c), size: c.length, platform: { os: 'linux', architecture: ['amd64', 'arm64'][i] } })),
  }));
  assertError(await call('/v2/team/dl/manifests/1', 'PUT', { 'Content-Type': DOCKER_LIST }, list), 404, 'MANIFEST_BLOB_UNKNOWN');
  for (const c of children) assert.equal((await call(`/v2/team/dl/manifests/${digestOf(c)}`, 'PUT', { 'Content-Type': DOCKER_V2 }, c)).status, 201);
  assert.equal((await call('/v2/team/dl/manifests/1', 'PUT', { 'Content-Type': DOCKER_LIST }, list)).status, 201);
  const r = await call('/v2/team/dl/manifests/1');
  assert.equal(r.headers['content-type'], DOCKER_LIST);
  assert.deepEqual(r.body, list);
  assert.equal((await call(`/v2/team/dl/manifests/${digestOf(children[1]!)}`)).headers['content-type'], DOCKER_V2);
});

test('an image index: export/import and the pull-through cache keep its children readable by digest', async () => {
  const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }];
  const image = await makeOciImage(await tempDir('oreg-idx-'), { platforms, seed: 'index travels' });
  await pushOciLayout(reg.url, 'team/idx', '1', image, AUTH.Authorization);
  const out = await tempDir('oreg-idx-out-');
  const dest = await tempDir('oreg-idx-in-');
  assert.equal((await cli(['export', 'ollama-registry.local/team/idx:1', '--to', path.join(out, 'b.tar'), '--data', reg.data])).code, 0);
  const imp = await cli(['import', path.join(out, 'b.tar'), '--data', dest]);
  assert.equal(imp.code, 0, imp.stderr);
  const copy = await startTestRegistry({ data: dest });
  try {
    for (const c of image.children) assert.equal((await request(copy.url, `/v2/team/idx/manifests/${c}`)).status, 200, c);
  } finally {
    await copy.close();
  }
  const s = await startCacheStack();
  try {
    await addUser(s.upstream, 'oci', 'oci password', 'team');
    await pushOciLayout(s.upstream.url, 'team/idx', '1', image, AUTH.Authorization);
    assert.deepEqual((await request(s.cache.url, '/v2/team/idx/manifests/1')).body, image.manifest);
    const child = await request(s.cache.url, `/v2/team/idx/manifests/${image.children[1]}`);
    assert.equal(child.status, 200);
    const untagged = path.join(s.cache.data, '.ollama-registry', 'untagged', s.cache.app.cache!.upstreams[0]!.host, 'team', 'idx', `sha256-${image.children[1]!.slice(7)}`);
    assert.ok(await exists(untagged), 'kept as an untagged manifest of the upstream folder');
  } finally {
    await s.close();
  }
});
