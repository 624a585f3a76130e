// What a new user reads when something is off: each case through the real command line.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { skipOrFail } from './support/ci.js';
import { cli } from './support/cli.js';
import { makeOllamaKey } from './support/ollama-client.js';
import { spawnRegistry, tempDir } from './support/server.js';

const CLEAN = { OLLAMA_REGISTRY_CONFIG: '', OLLAMA_REGISTRY_DATA: '', OLLAMA_REGISTRY_UPSTREAM: '' };

test('keys rm takes the .pub file that keys add took', async () => {
  const data = await tempDir();
  const pub = path.join(data, 'id_ed25519.pub');
  await writeFile(pub, `ssh-ed25519 ${makeOllamaKey().publicKeyB64} alice@laptop\n`);
  const add = await cli(['keys', 'add', pub, '--namespace', 'team', '--data', data], { env: CLEAN });
  assert.equal(add.code, 0, add.stderr);
  const rm = await cli(['keys', 'rm', pub, '--data', data], { env: CLEAN });
  assert.equal(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, /^removed key SHA256:\S+ \(alice@laptop\)\n$/);
  assert.equal(JSON.parse((await cli(['keys', 'ls', '--json', '--data', data], { env: CLEAN })).stdout).length, 0);
});

test('a config file that is not YAML: one prefix, the file, where, no dangling colon', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, 'listen: 1\nhosts: [a\n');
  const r = await cli(['ls', '--config', file, '--data', dir], { env: CLEAN });
  assert.equal(r.code, 2);
  const line = r.stderr.trimEnd();
  assert.ok(line.startsWith(`ollama-registry: config: ${file}: not valid YAML: `), line);
  assert.match(line, /line \d+, column \d+$/);
  assert.doesNotMatch(line, /config: config:/);
  assert.equal(line.split('\n').length, 1);
});

test('an unknown setting suggests the closest one', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, 'lisen: 127.0.0.1:8080\nstorage:\n  maxsize: 1GB\n');
  const r = await cli(['ls', '--config', file, '--data', dir], { env: CLEAN });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config: lisen: unknown setting \(in .*config\.yaml\); did you mean listen\?/);
  await writeFile(file, 'storage:\n  maxsize: 1GB\n');
  assert.match((await cli(['ls', '--config', file, '--data', dir], { env: CLEAN })).stderr, /did you mean storage\.maxSize\?/);
  await writeFile(file, 'colour: blue\n');
  assert.match((await cli(['ls', '--config', file, '--data', dir], { env: CLEAN })).stderr, /colour: unknown setting \(in [^)]+\)\n$/);
});

test('users add with nothing on stdin says so', async () => {
  const data = await tempDir();
  const r = await cli(['users', 'add', 'bob', '--namespace', 'team', '--data', data], { env: CLEAN, stdin: Buffer.alloc(0) });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no password on stdin/);
  assert.doesNotMatch(r.stderr, /8 characters/);
});

test('--data in a place that refuses new folders (/proc/x) fails with a clear message instead of hanging', async () => {
  for (const args of [['ls'], ['gc', '--dry-run'], ['serve', '--listen', '127.0.0.1:0']]) {
    const r = await cli([...args, '--data', '/proc/x'], { env: CLEAN, timeoutMs: 30_000 });
    assert.equal(r.code, 1, `${args[0]}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /cannot create folder \/proc\/x: ENOENT \(its parent does not accept new folders\)/);
  }
});

test('serve on a data folder it cannot write warns at start and still serves', async (t) => {
  const data = await tempDir();
  assert.equal((await cli(['ls', '--data', data], { env: CLEAN })).code, 0); // lays out the folder
  // Root writes anywhere: as root the folder becomes a read-only bind mount of itself (EROFS);
  // otherwise its modes are taken away (EACCES).
  const asRoot = process.getuid?.() === 0;
  const run = promisify(execFile);
  const folders = [data, ...(await readdir(data)).map((n) => path.join(data, n))];
  if (asRoot) {
    try {
      await run('mount', ['--bind', data, data]);
      await run('mount', ['-o', 'remount,bind,ro', data]);
    } catch (e) {
      await run('umount', [data]).catch(() => {});
      skipOrFail(t, `cannot make a read-only bind mount: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
  } else for (const d of folders) await chmod(d, 0o555);
  let out: string;
  try {
    const reg = await spawnRegistry(['--data', data], CLEAN);
    out = reg.output();
    await reg.stop();
  } finally {
    if (asRoot) await run('umount', [data]).catch(() => run('umount', ['-l', data]));
    else for (const d of folders) await chmod(d, 0o755);
  }
  const warn = out.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.level === 40);
  assert.ok(warn, out);
  assert.match(warn.msg, /the data folder is not writable: .*(EACCES|EROFS|ENOENT).*: serving what it holds, but pushes, pull-through, gc and last-pull records will fail/);
});
