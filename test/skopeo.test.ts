// skopeo (Debian's package, a real OCI registry client) against the registry.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { makeModel } from './support/models.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

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
