// The mirror's set-up web page: every OS's steps, the same text `client-setup --os X` prints,
// the CA download link, no script, and the catalog page's link to it when the mirror is on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MAIN, spawnRegistry, tempDir, type SpawnedRegistry } from './support/server.js';

const run = promisify(execFile);
let reg: SpawnedRegistry;
let dir: string;

before(async () => {
  dir = path.join(await tempDir(), 'mirror');
  await run(process.execPath, [MAIN, 'ca', 'init', '--dir', dir], { timeout: 60_000 });
  const cfg = path.join(await tempDir(), 'config.yaml');
  await writeFile(cfg, `mirror:\n  dir: ${dir}\n`);
  reg = await spawnRegistry(['--config', cfg, '--offline']);
});

after(async () => {
  await reg?.stop();
});

function unescape(html: string): string {
  return html.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&');
}

test('/mirror/setup shows each OS the text client-setup prints, in both modes, with the CA link and its fingerprint', async () => {
  for (const mode of ['proxy', 'dns']) {
    const res = await fetch(`${reg.url}/mirror/setup${mode === 'dns' ? '?mode=dns' : ''}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/html/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.match(res.headers.get('content-security-policy')!, /default-src 'none'; style-src 'self'/);
    const html = await res.text();
    assert.doesNotMatch(html, /<script/i);
    const blocks = [...html.matchAll(/<pre>([\s\S]*?)<\/pre>/g)].map((m) => unescape(m[1]!));
    for (const os of ['linux', 'macos', 'windows', 'docker']) {
      const printed = await run(process.execPath, [MAIN, 'client-setup', '--os', os, '--mode', mode, '--registry', reg.url], { timeout: 60_000 });
      assert.ok(blocks.includes(printed.stdout), `${os} ${mode}: the page shows what client-setup prints`);
      const undo = await run(process.execPath, [MAIN, 'client-setup', '--os', os, '--mode', mode, '--registry', reg.url, '--uninstall'], { timeout: 60_000 });
      assert.ok(blocks.includes(undo.stdout), `${os} ${mode}: and how to undo it`);
    }
    assert.match(html, /<a href="\/mirror\/ca\.pem" download="ollama-registry-ca\.pem">/);
    assert.ok(html.includes(new X509Certificate(await readFile(path.join(dir, 'ca.pem'))).fingerprint256));
    assert.match(html, /ollama pull ollama-registry-selftest/);
  }
  const text = await fetch(`${reg.url}/mirror/setup?os=windows`);
  assert.match(text.headers.get('content-type')!, /^text\/plain/);
  assert.match(await text.text(), /certutil -user -addstore Root/);
});

test('the catalog page learns from /api/ui/models that the mirror is on and links its set-up page', async () => {
  const body = await (await fetch(`${reg.url}/api/ui/models`)).json() as { features: { mirror?: { setupUrl: string } } };
  assert.deepEqual(body.features.mirror, { setupUrl: '/mirror/setup' });
  const index = await (await fetch(`${reg.url}/`)).text();
  assert.match(index, /<a id="mirror-link" class="mirror-link" href="\/mirror\/setup" hidden>/);
});
