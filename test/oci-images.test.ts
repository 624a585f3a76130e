// Container images through the registry with real OCI clients: an OCI image without any
// `mediaType` (umoci writes them so) keeps its type on the way out, so skopeo and podman can
// read it back (issue 13.3), and `skopeo copy --all` of a two-platform image index comes back
// with identical digests.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { request } from './support/http.js';
import { makeOciImage } from './support/oci-image.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const run = promisify(execFile);
let reg: TestRegistry;

function skopeo(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  // HOME in the data folder: skopeo's auth and blob-info cache files stay out of the real one.
  return run('skopeo', ['--insecure-policy', ...args], { env: { ...process.env, HOME: reg.data }, timeout: 120_000 });
}

const push = (src: string, dest: string, ...flags: string[]) =>
  skopeo('copy', ...flags, '--dest-creds', 'dev:dev password', '--dest-tls-verify=false', src, `docker://${reg.hostPort}/${dest}`);

before(async () => {
  reg = await startTestRegistry();
  await addUser(reg, 'dev', 'dev password', 'team');
});
after(() => reg.close());

test('an OCI image without mediaType: served as an OCI manifest, copied back out by skopeo, pulled by podman', async () => {
  const image = await makeOciImage(await tempDir('oreg-oci-'), { noMediaType: true, seed: 'no media type' });
  assert.equal(JSON.parse(image.manifest.toString()).mediaType, undefined);
  await push(`oci:${image.dir}:1`, 'team/bare:1', '--preserve-digests');
  const r = await request(reg.url, '/v2/team/bare/manifests/1', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(r.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json');
  assert.deepEqual(r.body, image.manifest);
  const out = await tempDir('oreg-oci-out-');
  await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', `docker://${reg.hostPort}/team/bare:1`, `oci:${out}:1`);
  assert.deepEqual(await readFile(path.join(out, 'blobs', 'sha256', image.digest.slice(7))), image.manifest);
  const { stdout } = await skopeo('inspect', '--tls-verify=false', `docker://${reg.hostPort}/team/bare:1`);
  assert.equal(JSON.parse(stdout).Digest, image.digest);

  // podman, with its own throwaway storage (vfs: no kernel overlay needed).
  const store = await tempDir('oreg-podman-');
  const podman = (...args: string[]) => run('podman', ['--root', path.join(store, 'root'), '--runroot', path.join(store, 'run'), '--storage-driver', 'vfs', ...args],
    { env: { ...process.env, HOME: store, XDG_RUNTIME_DIR: store, XDG_CONFIG_HOME: store }, timeout: 120_000 });
  await podman('pull', '--tls-verify=false', `${reg.hostPort}/team/bare:1`);
  const { stdout: ids } = await podman('images', '--digests', '--format', '{{.Digest}}');
  assert.match(ids, new RegExp(image.digest));
});

test('skopeo copy --all of a two-platform image index, in and out, with identical digests', async () => {
  const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }];
  const image = await makeOciImage(await tempDir('oreg-oci-multi-'), { platforms, seed: 'multi' });
  await push(`oci:${image.dir}:1`, 'team/multi:1', '--all', '--preserve-digests');
  const r = await request(reg.url, '/v2/team/multi/manifests/1');
  assert.equal(r.headers['content-type'], 'application/vnd.oci.image.index.v1+json');
  assert.equal(r.headers['docker-content-digest'], image.digest);
  assert.deepEqual(r.body, image.manifest, 'the index is stored and served verbatim');
  for (const child of image.children) assert.equal((await request(reg.url, `/v2/team/multi/manifests/${child}`, { method: 'HEAD' })).status, 200);
  const out = await tempDir('oreg-oci-multi-out-');
  await skopeo('copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${reg.hostPort}/team/multi:1`, `oci:${out}:1`);
  const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8'));
  assert.equal(index.manifests[0].digest, image.digest);
  for (const d of [image.digest, ...image.children]) assert.ok(await readFile(path.join(out, 'blobs', 'sha256', d.slice(7))), d);
  // One platform, as a docker or podman client on arm64 would pick it.
  const arm = await tempDir('oreg-oci-arm-');
  await skopeo('copy', '--override-arch', 'arm64', '--src-tls-verify=false', `docker://${reg.hostPort}/team/multi:1`, `oci:${arm}:1`);
  const armIndex = JSON.parse(await readFile(path.join(arm, 'index.json'), 'utf8'));
  assert.equal(armIndex.manifests[0].digest, image.children[1]);
});
