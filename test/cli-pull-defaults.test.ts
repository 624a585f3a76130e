// `ollama-registry pull` as a new user meets it: with no upstream configured it goes where ollama
// goes (registry.ollama.ai), an upstream given by environment works, the data folder remembers
// which host folders are caches (ls/gc without the setting), and on a terminal the result lines
// are printed whole under the progress bars.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { stripVTControlCharacters } from 'node:util';
import { after, before, test } from 'node:test';
import { startCacheStack, type CacheStack } from './support/cache.js';
import { cli } from './support/cli.js';
import { makeModel } from './support/models.js';
import { MAIN, tempDir } from './support/server.js';

// Settings of the machine running the tests must not leak into the commands.
// The fault front redirects blobs to its CDN host 127.0.0.2, a private address: listed.
const CLEAN = { OLLAMA_REGISTRY_CONFIG: '', OLLAMA_REGISTRY_UPSTREAM: '', OLLAMA_REGISTRY_OFFLINE: '', OLLAMA_REGISTRY_DATA: '', OLLAMA_REGISTRY_UPSTREAM_ALLOW_PRIVATE_HOSTS: '127.0.0.2' };

let s: CacheStack;

before(async () => {
  s = await startCacheStack();
  await makeModel(s.upstream.data, { model: 'gemma2', tag: '2b', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 2 << 20 }] });
});
after(() => s.close());

test('pull with no upstream goes to registry.ollama.ai and names it when it cannot get the model', async () => {
  const data = await tempDir();
  // A name no registry has: with a network it is a 404 from registry.ollama.ai, without one a
  // failed lookup; either way the message names the host and the exit code is 1.
  const r = await cli(['pull', '--data', data, 'ollama-registry-test/no-such-model:never'], { env: CLEAN });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /no upstream is configured: pulling from registry\.ollama\.ai as ollama does/);
  assert.match(r.stdout, /failed ollama-registry-test\/no-such-model:never: .*registry\.ollama\.ai \(https:\/\/registry\.ollama\.ai\)/);
  assert.doesNotMatch(r.stdout + r.stderr, /no upstream is configured: give/);
});

test('pull with no upstream and a name with a host fetches from that host (--insecure: plain HTTP), into its host folder', async () => {
  const data = await tempDir();
  const host = new URL(s.front.url).host;
  const r = await cli(['pull', '--data', data, '--insecure', `${host}/library/gemma2:2b`], { env: CLEAN });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`pulling from registry\\.ollama\\.ai, ${host.replace(/\./g, '\\.')} as ollama does`));
  assert.match(r.stdout, /pulled 127\.0\.0\.1:\d+\/library\/gemma2:2b: 2 blob\(s\)/);
  const ls = JSON.parse((await cli(['ls', '--data', data, '--json'], { env: CLEAN })).stdout);
  assert.deepEqual(ls.models.map((m: { host: string; source: string }) => [m.host, m.source]), [[host, 'cache']]);
});

test('pull --offline (or OLLAMA_REGISTRY_OFFLINE) refuses with a clear message', async () => {
  const data = await tempDir();
  for (const [args, env] of [[['--offline'], {}], [[], { OLLAMA_REGISTRY_OFFLINE: 'true' }]] as const) {
    const r = await cli(['pull', '--data', data, ...args, 'gemma2:2b'], { env: { ...CLEAN, ...env } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /offline mode is set .*nothing can be pulled/);
  }
});

test('pull from an upstream given by environment; ls and gc without it still know the copy is a cache', async () => {
  const data = await tempDir();
  const r = await cli(['pull', '--data', data, 'gemma2:2b'], { env: { ...CLEAN, OLLAMA_REGISTRY_UPSTREAM: s.front.url } });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /pulled gemma2:2b/);
  // No upstream setting from here on: the data folder says which host folder is a cache.
  const ls = await cli(['ls', '--data', data, '--json'], { env: CLEAN });
  assert.equal(ls.code, 0, ls.stderr);
  const rows = JSON.parse(ls.stdout).models as Array<{ name: string; source: string }>;
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.source, 'cache');
  const gc = await cli(['gc', '--data', data, '--max-size', '1', '--grace', '0s', '--json'], { env: CLEAN });
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);
  const after = JSON.parse((await cli(['ls', '--data', data, '--json'], { env: CLEAN })).stdout);
  assert.equal(after.models.length, 0, 'the cached copy was evicted under the cap');
});

/** Run a command on a pseudo-terminal of the given width (util-linux `script`); its whole output. */
function onTerminal(command: string, env: NodeJS.ProcessEnv, cols = 80): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', `stty cols ${cols} rows 40; exec ${command}`, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

test('pull on a terminal prints its result lines whole under the progress bars', async () => {
  const data = await tempDir();
  const longName = `library/${'x'.repeat(60)}:missing`;
  const r = await onTerminal(`${process.execPath} ${MAIN} pull --data ${data} gemma2:2b ${longName}`, { ...CLEAN, OLLAMA_REGISTRY_UPSTREAM: s.front.url });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /\|.*\| 100%/, 'progress bars were drawn');
  // What the terminal shows: escape sequences and line ends out, wrapped lines joined.
  const text = stripVTControlCharacters(r.out).replace(/\r?\n|\r/g, '');
  assert.match(text, /pulled gemma2:2b: 1 blob\(s\)|pulled gemma2:2b: 2 blob\(s\)/);
  assert.ok(text.includes(`failed ${longName}: manifest unknown: ${longName} is neither here nor on upstream ${new URL(s.front.url).host} (${s.front.url})`), r.out);
});
