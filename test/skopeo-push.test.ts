// skopeo (Debian's package, a real OCI client) pushes an ordinary OCI image into the registry
// with a user's password and copies it back out: POST, chunked PATCH without Content-Range, PUT
// ?digest, manifest PUT, all through the Bearer challenge and Basic at the token endpoint.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { sha256Hex } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const run = promisify(execFile);
let reg: TestRegistry;
let image: { dir: string; manifest: Buffer; layer: Buffer; layerDigest: string };

/** One ustar archive holding one file. */
function tar(name: string, content: Buffer): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, off: number, len: number) => h.write(s, off, len, 'latin1');
  const octal = (n: number, len: number) => `${n.toString(8).padStart(len - 1, '0')}\0`;
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(content.length, 12), 124, 12);
  put(octal(1_700_000_000, 12), 136, 12);
  put('        ', 148, 8);
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([h, content, pad, Buffer.alloc(1024)]);
}

/** An OCI image layout with one gzip layer, tagged `1`. */
async function makeOciImage(dir: string) {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (b: Buffer) => {
    const hex = sha256Hex(b);
    await writeFile(path.join(blobs, hex), b);
    return { digest: `sha256:${hex}`, size: b.length };
  };
  const raw = tar('hello.txt', Buffer.from('hello from an OCI image\n'.repeat(2000)));
  const layer = gzipSync(raw);
  const l = await put(layer);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${sha256Hex(raw)}`] } }));
  const c = await put(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...c },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l }],
  }));
  const m = await put(manifest);
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': '1' } }],
  }));
  return { dir, manifest, layer, layerDigest: l.digest };
}

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
