// skopeo (Debian's package, a real OCI client) pushes an ordinary OCI image into the registry
// with a user's password and copies it back out: POST, chunked PATCH without Content-Range, PUT
// ?digest, manifest PUT, all through the Bearer challenge and Basic at the token endpoint.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { makeOciImage, type OciImage } from './support/oci-image.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const run = promisify(execFile);
let reg: TestRegistry;
let image: OciImage;

function skopeo(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  // HOME in the data folder: skopeo's auth and blob-info cache files stay out of the real one.
  return run('skopeo', ['--insecure-policy', ...args], { env: { ...process.env, HOME: reg.data } });
}

before(async () => {
  reg = await startTestRegistry();
  await addUser(reg, 'dev', 'dev password', 'team');
  await addUser(reg, 'viewer', 'viewer password', 'team', ['pull']);
  image = await makeOciImage(await tempDir('oreg-oci-'));
});
after(() => reg.close());

test('skopeo copy of an OCI image into the registry with user credentials, and back out', async () => {
  await skopeo('copy', '--preserve-digests', '--dest-creds', 'dev:dev password', '--dest-tls-verify=false', `oci:${image.dir}:1`, `docker://${reg.hostPort}/team/img:1`);
  const stored = await readFile(path.join(reg.data, 'manifests', 'ollama-registry.local', 'team', 'img', '1'));
  assert.deepEqual(stored, image.manifest);
  const { stdout } = await skopeo('inspect', '--raw', '--creds', 'dev:dev password', '--tls-verify=false', `docker://${reg.hostPort}/team/img:1`);
  assert.equal(stdout, image.manifest.toString());
  const out = await tempDir('oreg-oci-out-');
  await skopeo('copy', '--preserve-digests', '--src-creds', 'viewer:viewer password', '--src-tls-verify=false', `docker://${reg.hostPort}/team/img:1`, `oci:${out}:1`);
  assert.deepEqual(await readFile(path.join(out, 'blobs', 'sha256', image.layerDigest.slice(7))), image.layer);
  // Anonymous reads work too (the default), through skopeo's anonymous token.
  const anon = await tempDir('oreg-oci-anon-');
  await skopeo('copy', '--src-tls-verify=false', `docker://${reg.hostPort}/team/img:1`, `oci:${anon}:1`);
  assert.deepEqual(await readFile(path.join(anon, 'blobs', 'sha256', image.layerDigest.slice(7))), image.layer);
});

test('skopeo push with a wrong password, without credentials, or as a pull-only user fails and stores nothing', async () => {
  for (const creds of [['--dest-creds', 'dev:wrong password'], [], ['--dest-creds', 'viewer:viewer password']]) {
    await assert.rejects(
      skopeo('copy', '--retry-times', '0', ...creds, '--dest-tls-verify=false', `oci:${image.dir}:1`, `docker://${reg.hostPort}/team/denied:1`),
      (e: any) => /unauthorized|denied|authentication required|wrong user name/i.test(e.stderr),
    );
  }
  // Without credentials, skopeo is told to log in (it pushes with an anonymous token).
  const anon = await skopeo('copy', '--retry-times', '0', '--dest-tls-verify=false', `oci:${image.dir}:1`, `docker://${reg.hostPort}/team/denied:1`).then(() => '', (e: any) => e.stderr as string);
  assert.match(anon, /push needs credentials: log in \(skopeo --dest-creds USER:PASSWORD, docker login\)/);
  const r = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.hostPort}/team/denied:1`).then(() => 'found', (e: any) => e.stderr as string);
  assert.match(r, /manifest unknown|not in this registry/i);
});
