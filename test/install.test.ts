// The install step of the README puts `ollama-registry` on the PATH with its web catalog: the
// package as npm packs it (prepare builds it; `files` decides what ships) installed into a fresh
// prefix, its bin run as a user runs it. Packed from a copy of the sources, so the build does
// not rewrite the dist/ other tests run from. Slow (a full tsc build); dependencies come from
// npm's cache or registry, which CI has after `npm ci`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, readdir, readFile, realpath, symlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { request } from './support/http.js';
import { spawnRegistry, tempDir } from './support/server.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('npm pack + npm install -g: the bin is on the PATH prefix, serves the catalog page and its script', async () => {
  const src = await tempDir('oreg-pkg-');
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'src']) await cp(path.join(ROOT, f), path.join(src, f), { recursive: true });
  await symlink(await realpath(path.join(ROOT, 'node_modules')), path.join(src, 'node_modules'));
  const out = await tempDir('oreg-pack-');
  await run('npm', ['pack', '--pack-destination', out, '--no-fund'], { cwd: src, maxBuffer: 16 << 20 });
  const tgz = (await readdir(out)).find((f) => f.endsWith('.tgz'));
  assert.ok(tgz, 'npm pack made a tarball');

  const prefix = await tempDir('oreg-prefix-');
  await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', path.join(out, tgz)], { maxBuffer: 16 << 20 });
  const bin = path.join(prefix, 'bin', 'ollama-registry');
  const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
  assert.equal((await run(bin, ['--version'])).stdout.trim(), version);

  const reg = await spawnRegistry(['--data', await tempDir()], { OLLAMA_REGISTRY_CONFIG: '' }, [bin]);
  try {
    // The bin's first line gives node the young-generation size serve's memory figures assume (src/main.ts).
    const argv = (await readFile(`/proc/${reg.child.pid}/cmdline`, 'utf8')).split('\0');
    for (const flag of ['--max-semi-space-size=8', '--initial-old-space-size=48']) assert.ok(argv.includes(flag), `the installed bin runs node with ${flag}: ${argv.join(' ')}`);
    const page = await request(reg.url, '/');
    assert.equal(page.status, 200, page.text());
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.text(), /<script[^>]+src="\/ui\/app\.js"/);
    for (const asset of ['/ui/app.js', '/ui/util.js', '/ui/bytes.js', '/ui/app.css']) {
      const r = await request(reg.url, asset);
      assert.equal(r.status, 200, `${asset}: ${r.text()}`);
      assert.ok(r.body.length > 100, asset);
    }
    assert.equal((await request(reg.url, '/api/ui/models')).status, 200);
  } finally {
    await reg.stop();
  }
});

test('the README gives that install step first and writes every command the same way', async () => {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)![1]!;
  assert.match(firstBlock.split('\n')[0]!, /^npm ci && npm install -g \.\s+#/);
  // `npx ollama-registry` outside the clone asks the npm registry for a package of that name.
  assert.doesNotMatch(readme, /npx ollama-registry/);
});

