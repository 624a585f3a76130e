// The intercepted hosts are a list (mirror.hosts): hf.co as a second site next to
// registry.ollama.ai, each with its own upstream; the CA's name constraints follow the list, and
// a CA made for a shorter list is refused with the way out (re-make it) rather than used.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { spawnRegistry, startTestRegistry, tempDir, type TestRegistry } from './support/server.js';
import { makeModel, type MadeModel } from './support/models.js';
import { cli as runCli } from './support/cli.js';
import { goRequest } from './support/mirror.js';

const run = promisify(execFile);
let hfUp: TestRegistry;
let hfModel: MadeModel;

/** The CLI's exit code and everything it printed. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const r = await runCli(args, { timeoutMs: 60_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

async function config(dir: string, hosts: string[]): Promise<string> {
  const file = path.join(await tempDir(), 'config.yaml');
  await writeFile(file, `upstreams:\n  - name: ollama\n    url: http://127.0.0.2:1\n    host: registry.ollama.ai\n    timeout: 5s\n` +
    `  - name: hf\n    url: ${hfUp.url}\n    host: hf.co\n    timeout: 5s\nmirror:\n  dir: ${dir}\n  hosts: [${hosts.join(', ')}]\n`);
  return file;
}

before(async () => {
  hfUp = await startTestRegistry({ config: { listen: { host: '127.0.0.2', port: 0 } } });
  // hf.co serves ollama's API for GGUF repositories: `ollama pull hf.co/user/repo:quant`.
  hfModel = await makeModel(hfUp.data, { host: 'registry.ollama.ai', namespace: 'someone', model: 'tiny-gguf', tag: 'Q4_K_M', layers: [
    { mediaType: 'application/vnd.ollama.image.model', size: 256 << 10 },
  ] });
});

after(async () => {
  await hfUp?.close();
});

test('a CA made for registry.ollama.ai alone cannot serve hf.co: serve and --renew-leaf say it must be re-made with --force', async () => {
  const dir = path.join(await tempDir(), 'mirror');
  assert.equal((await cli(['ca', 'init', '--dir', dir])).code, 0);
  const cfg = await config(dir, ['registry.ollama.ai', 'hf.co']);
  const serve = await cli(['serve', '--listen', '127.0.0.1:0', '--config', cfg]);
  assert.notEqual(serve.code, 0);
  assert.match(serve.out, /may vouch only for registry\.ollama\.ai .*not hf\.co: the intercepted hosts grew after ca init, so the CA must be re-made \(ollama-registry ca init --force/);
  const renew = await cli(['ca', 'init', '--dir', dir, '--renew-leaf', '--host', 'registry.ollama.ai', '--host', 'hf.co']);
  assert.equal(renew.code, 2);
  assert.match(renew.out, /must be re-made/);
  const remade = await cli(['ca', 'init', '--dir', dir, '--force', '--host', 'registry.ollama.ai', '--host', 'hf.co']);
  assert.equal(remade.code, 0, remade.out);
  const ok = await run('openssl', ['verify', '-CAfile', path.join(dir, 'ca.pem'), '-verify_hostname', 'hf.co', path.join(dir, 'leaf.pem')]);
  assert.match(ok.stdout, /OK/);
});

test('hf.co as a site: `ollama pull hf.co/someone/tiny-gguf:Q4_K_M` is served from its own upstream, and its writes are relayed there', async () => {
  const dir = path.join(await tempDir(), 'mirror');
  assert.equal((await cli(['ca', 'init', '--dir', dir, '--host', 'registry.ollama.ai', '--host', 'hf.co'])).code, 0);
  const reg = await spawnRegistry(['--config', await config(dir, ['registry.ollama.ai', 'hf.co'])]);
  try {
    const port = Number(new URL(reg.url).port);
    const ca = await readFile(path.join(dir, 'ca.pem'));
    const mf = await goRequest(port, ca, 'GET', '/v2/someone/tiny-gguf/manifests/Q4_K_M', { host: 'hf.co' });
    assert.equal(mf.status, 200, mf.body.toString());
    assert.deepEqual(mf.body, hfModel.manifestBytes);
    const blob = await goRequest(port, ca, 'GET', `/v2/someone/tiny-gguf/blobs/${hfModel.blobs[0]!.digest}`, { host: 'hf.co' });
    assert.equal(blob.status, 200);
    assert.equal(blob.body.length, hfModel.blobs[0]!.size);
    // A write for hf.co goes to hf.co's upstream, not registry.ollama.ai's.
    const post = await goRequest(port, ca, 'POST', '/v2/someone/tiny-gguf/blobs/uploads/', { host: 'hf.co', headers: { 'Content-Length': '0' } });
    // registry.ollama.ai's upstream is down here (nothing listens on port 1): a live answer is hf.co's.
    assert.equal(post.status, 401, post.body.toString()); // hf.co's upstream wants a sign-in: its own challenge comes back
    assert.match(post.headers['www-authenticate'] ?? '', /^Bearer realm="http:\/\/hf\.co\/v2\/token"/);
  } finally {
    await reg.stop();
  }
});
