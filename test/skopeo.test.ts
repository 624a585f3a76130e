// skopeo (Debian's package, a real OCI registry client) against the registry.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { makeModel } from './support/models.js';
import { request } from './support/http.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const run = promisify(execFile);
let reg: TestRegistry;
let model: Awaited<ReturnType<typeof makeModel>>;

async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', ['--insecure-policy', ...args], { env: { ...process.env, HOME: reg.data } });
  return stdout;
}

before(async () => {
  reg = await startTestRegistry();
  model = await makeModel(reg.data, { model: 'gemma2', tag: '2b' });
  await makeModel(reg.data, { model: 'gemma2', tag: 'latest' });
});
after(() => reg.close());

test('skopeo inspect --raw returns the manifest bytes', async () => {
  const out = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.hostPort}/library/gemma2:2b`);
  assert.equal(out, model.manifestBytes.toString());
});

test('skopeo list-tags lists the tags', async () => {
  const out = JSON.parse(await skopeo('list-tags', '--tls-verify=false', `docker://${reg.hostPort}/library/gemma2`));
  assert.deepEqual(out.Tags, ['2b', 'latest']);
});

test('skopeo inspect by digest', async () => {
  const out = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${reg.hostPort}/library/gemma2@${model.manifestDigest}`);
  assert.equal(out, model.manifestBytes.toString());
});

test('skopeo inspect and copy refuse ollama layer types, as the README says; the blob is there for curl', async () => {
  const refusal = /unsupported docker v2s2 media type: \\?"application\/vnd\.ollama\.image\.model\\?"/; // skopeo escapes the quotes in its log line
  const ref = `docker://${reg.hostPort}/library/gemma2:2b`;
  const failed = (p: Promise<string>) => p.then(() => 'it worked', (e: { stderr: string }) => e.stderr);
  assert.match(await failed(skopeo('inspect', '--tls-verify=false', ref)), refusal);
  assert.match(await failed(skopeo('copy', '--src-tls-verify=false', ref, `dir:${await tempDir('oreg-skopeo-')}`)), refusal);
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## What skopeo can and cannot do with ollama models'));
  assert.ok(section.includes('unsupported docker v2s2 media type: "application/vnd.ollama.image.model"'));
  for (const cmd of ['skopeo inspect --raw', 'skopeo list-tags', 'curl -L -o FILE']) assert.ok(section.includes(cmd), cmd);
  // What the README offers instead for one blob: a plain GET of it (curl -L follows the Location).
  const blob = model.blobs.find((b) => b.mediaType === 'application/vnd.ollama.image.model')!;
  const r = await request(reg.url, `/v2/library/gemma2/blobs/${blob.digest}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, blob.size);
});

