// export → import → pull: byte-identical models, an ollama-layout bundle, shared blobs once,
// incremental bundles; import of hostile or damaged bundles keeps only what is verified.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import tar from 'tar-stream';
import { classify } from '../src/registry/transfer/import-tar.js';
import { cli } from './support/cli.js';
import { makeModel, sha256File, type MadeModel } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { MAIN, startTestRegistry, tempDir } from './support/server.js';

const MODEL = 'application/vnd.ollama.image.model';
const LICENSE = { mediaType: 'application/vnd.ollama.image.license', content: 'one license, shared by two models' };

/** Every file under a folder, relative, sorted. */
async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)))
    .sort();
}

async function tarEntries(file: string): Promise<Array<{ name: string; type: string; size: number }>> {
  const out: Array<{ name: string; type: string; size: number }> = [];
  const ex = tar.extract();
  createReadStream(file).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const e of ex) {
    out.push({ name: e.header.name, type: e.header.type, size: e.header.size });
    for await (const _ of e) { /* drain */ }
  }
  return out;
}

async function twoSharingModels(dir: string): Promise<{ gemma: MadeModel; llama: MadeModel; other: MadeModel }> {
  const gemma = await makeModel(dir, { model: 'gemma2', tag: '2b', layers: [{ mediaType: MODEL, size: 2_000_000, seed: 'gemma' }, LICENSE] });
  const llama = await makeModel(dir, { model: 'llama3.2', tag: '1b', layers: [{ mediaType: MODEL, size: 1_000_000, seed: 'llama' }, LICENSE] });
  const other = await makeModel(dir, { host: 'hf.co', namespace: 'u', model: 'other', tag: 'Q4_K_M', layers: [{ mediaType: MODEL, size: 500_000, seed: 'o' }] });
  return { gemma, llama, other };
}

/** Pull with the ollama client emulation and compare every byte with the source model. */
async function pullAndCompare(data: string, name: string, m: MadeModel): Promise<void> {
  const reg = await startTestRegistry({ data });
  try {
    const modelsDir = await tempDir('oreg-client-');
    await ollamaPull(`${reg.hostPort}/library/${name}`, { modelsDir });
    const [model, tag] = name.split(':') as [string, string];
    assert.deepEqual(await readFile(path.join(modelsDir, 'manifests', reg.hostPort, 'library', model, tag)), m.manifestBytes);
    for (const b of m.blobs) assert.equal(await sha256File(path.join(modelsDir, 'blobs', `sha256-${b.digest.slice(7)}`)), b.digest);
  } finally {
    await reg.close();
  }
}

test('export to a folder: ollama layout, shared blobs once; import into a fresh registry; pulls are byte-identical', async () => {
  const src = await tempDir();
  const { gemma, llama } = await twoSharingModels(src);
  const out = path.join(await tempDir('oreg-out-'), 'bundle');
  const r = await cli(['export', 'gemma2:2b', 'registry.ollama.ai/library/llama3.2:1b', '--to', out, '--data', src]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /2 tag\(s\), 4 blob\(s\) \(3\.0 MB\) written to /);
  const digests = new Set([...gemma.blobs, ...llama.blobs].map((b) => b.digest));
  assert.equal(digests.size, 4, 'license and config are shared');
  assert.deepEqual(await files(out), [
    ...[...digests].map((d) => `blobs/sha256-${d.slice(7)}`).sort(),
    'manifests/registry.ollama.ai/library/gemma2/2b',
    'manifests/registry.ollama.ai/library/llama3.2/1b',
  ]);
  for (const d of digests) assert.equal(await sha256File(path.join(out, 'blobs', `sha256-${d.slice(7)}`)), d);
  assert.deepEqual(await readFile(path.join(out, 'manifests/registry.ollama.ai/library/gemma2/2b')), gemma.manifestBytes);

  const dest = await tempDir();
  const imp = await cli(['import', out, '--data', dest]);
  assert.equal(imp.code, 0, imp.stderr);
  await pullAndCompare(dest, 'gemma2:2b', gemma);
  await pullAndCompare(dest, 'llama3.2:1b', llama);
  // Exporting again into the same folder skips what is there.
  const again = await cli(['export', 'gemma2:2b', '--to', out, '--data', src]);
  assert.match(again.stdout, /0 blob\(s\) \(0 B\) written .*; 3 blob\(s\) already there/);
});

test('export to a tar file and through a pipe (export --to - | import -); the tar holds each blob once', async () => {
  const src = await tempDir();
  const { gemma, llama } = await twoSharingModels(src);
  const file = path.join(await tempDir('oreg-out-'), 'models.tar');
  const r = await cli(['export', 'gemma2:2b', 'llama3.2:1b', '--to', file, '--data', src]);
  assert.equal(r.code, 0, r.stderr);
  const entries = await tarEntries(file);
  assert.deepEqual(entries.slice(0, 2).map((e) => e.name), ['manifests/registry.ollama.ai/library/gemma2/2b', 'manifests/registry.ollama.ai/library/llama3.2/1b']);
  const blobNames = entries.filter((e) => e.name.startsWith('blobs/')).map((e) => e.name);
  assert.equal(blobNames.length, 4);
  assert.equal(new Set(blobNames).size, 4);
  assert.ok(entries.every((e) => e.type === 'file'));
  assert.deepEqual((await readdir(path.dirname(file))), ['models.tar'], 'no partial file left');

  const viaFile = await tempDir();
  assert.equal((await cli(['import', file, '--data', viaFile])).code, 0);
  await pullAndCompare(viaFile, 'llama3.2:1b', llama);

  const viaPipe = await tempDir();
  const exp = spawn(process.execPath, [MAIN, 'export', 'gemma2:2b', 'llama3.2:1b', '--to', '-', '--data', src], { stdio: ['ignore', 'pipe', 'pipe'] });
  let expErr = '';
  exp.stderr.on('data', (b: Buffer) => { expErr += b.toString(); });
  const imp = await cli(['import', '-', '--data', viaPipe], { stdin: exp.stdout });
  assert.equal(imp.code, 0, imp.stderr);
  assert.match(expErr, /2 tag\(s\), 4 blob\(s\) \(3\.0 MB\) written to stdout/);
  assert.match(imp.stdout, /imported 2 model tag\(s\).*4 copied \(3\.0 MB\)/);
  await pullAndCompare(viaPipe, 'gemma2:2b', gemma);
});

test('incremental export: --exclude-from (the other side\'s ls --json) and --since leave out what the other side has', async () => {
  const src = await tempDir();
  const { gemma } = await twoSharingModels(src);
  const dest = await tempDir();
  const first = path.join(await tempDir('oreg-out-'), 'first');
  await cli(['export', 'gemma2:2b', '--to', first, '--data', src]);
  await cli(['import', first, '--data', dest]);
  const have = path.join(await tempDir('oreg-out-'), 'dest-ls.json');
  const ls = await cli(['ls', '--json', '--data', dest]);
  await writeFile(have, ls.stdout);

  const delta = path.join(await tempDir('oreg-out-'), 'delta');
  const r = await cli(['export', '--all', '--exclude-from', have, '--to', delta, '--data', src]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1 tag\(s\) the other side already has/);
  const got = await files(delta);
  assert.ok(got.includes('manifests/registry.ollama.ai/library/llama3.2/1b') && got.includes('manifests/hf.co/u/other/Q4_K_M'));
  assert.ok(!got.includes('manifests/registry.ollama.ai/library/gemma2/2b'));
  for (const b of gemma.blobs) assert.ok(!got.includes(`blobs/sha256-${b.digest.slice(7)}`), 'blobs the other side has stay out (license, config)');
  assert.equal(got.filter((f) => f.startsWith('blobs/')).length, 2);
  const imp = await cli(['import', delta, '--data', dest]);
  assert.equal(imp.code, 0, imp.stderr);
  assert.match(imp.stdout, /imported 2 model tag\(s\)/);

  const since = new Date(Date.now() - 1000).toISOString();
  await new Promise((r) => setTimeout(r, 1100));
  const later = await makeModel(src, { model: 'later', layers: [{ mediaType: MODEL, size: 1000, seed: 'later' }] });
  const sinceDir = path.join(await tempDir('oreg-out-'), 'since');
  const s = await cli(['export', '--all', '--since', since, '--to', sinceDir, '--data', src]);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /exported registry\.ollama\.ai\/library\/later:latest\n1 tag\(s\)/);
  assert.ok((await files(sinceDir)).includes(`blobs/sha256-${later.blobs[0]!.digest.slice(7)}`));
  assert.ok(!(await files(sinceDir)).includes(`blobs/sha256-${gemma.blobs[0]!.digest.slice(7)}`));
  assert.equal((await cli(['import', sinceDir, '--data', dest])).code, 0);
  await pullAndCompare(dest, 'later:latest', later);
});

/** Write a tar by hand (for damaged and hostile bundles). */
async function writeTar(file: string, entries: Array<{ name: string; body?: Buffer; type?: 'file' | 'symlink' | 'link'; linkname?: string }>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(file));
  for (const e of entries) {
    const header = { name: e.name, type: e.type ?? 'file', linkname: e.linkname, size: e.body?.length ?? 0 };
    await new Promise<void>((resolve, reject) => pack.entry(header, e.body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
}

async function bundleEntries(dir: string, m: MadeModel, rel: string): Promise<Array<{ name: string; body: Buffer }>> {
  const out = [{ name: rel, body: m.manifestBytes }];
  for (const b of m.blobs) out.push({ name: `blobs/sha256-${b.digest.slice(7)}`, body: await readFile(path.join(dir, 'blobs', `sha256-${b.digest.slice(7)}`)) });
  return out;
}

test('import of a tar with a corrupt blob rejects that blob and the tags needing it, keeps the rest', async () => {
  const src = await tempDir();
  const good = await makeModel(src, { model: 'good', layers: [{ mediaType: MODEL, size: 50_000, seed: 'g' }] });
  const bad = await makeModel(src, { model: 'bad', layers: [{ mediaType: MODEL, size: 50_000, seed: 'b' }] });
  const entries = [...(await bundleEntries(src, good, 'manifests/registry.ollama.ai/library/good/latest')), ...(await bundleEntries(src, bad, 'manifests/registry.ollama.ai/library/bad/latest'))];
  const badLayer = bad.blobs.find((b) => b.size === 50_000)!.digest;
  const e = entries.find((x) => x.name.endsWith(badLayer.slice(7)))!;
  e.body = Buffer.from(e.body);
  e.body[100] ^= 0xff;
  const file = path.join(await tempDir('oreg-out-'), 'bad.tar');
  await writeTar(file, entries);
  const data = await tempDir();
  const r = await cli(['import', file, '--data', data]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`bad: blobs/sha256-${badLayer.slice(7)}: corrupt`));
  assert.match(r.stderr, new RegExp(`bad: manifests/registry.ollama.ai/library/bad/latest: needs blob ${badLayer}, which is corrupt`));
  assert.match(r.stdout, /added {4}registry\.ollama\.ai\/library\/good:latest/);
  await assert.rejects(stat(path.join(data, 'blobs', `sha256-${badLayer.slice(7)}`)));
  await assert.rejects(stat(path.join(data, 'manifests/registry.ollama.ai/library/bad/latest')));
  assert.deepEqual(await readdir(path.join(data, '.ollama-registry', 'tmp')), []);
  await pullAndCompare(data, 'good:latest', good);
});

test('a truncated tar keeps every model that arrived whole and verified, and reports the rest', async () => {
  const src = await tempDir();
  const first = await makeModel(src, { model: 'first', layers: [{ mediaType: MODEL, size: 1_000_000, seed: 'f' }] });
  await makeModel(src, { model: 'second', layers: [{ mediaType: MODEL, size: 2_000_000, seed: 's' }] });
  const file = path.join(await tempDir('oreg-out-'), 'cut.tar');
  assert.equal((await cli(['export', 'first', 'second', '--to', file, '--data', src])).code, 0);
  await truncate(file, (await stat(file)).size - 1_000_000); // in the middle of second's layer
  const data = await tempDir();
  const r = await cli(['import', file, '--data', data]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /incomplete: the tar ends early or cannot be read .*kept what was complete and verified/);
  assert.match(r.stderr, /bad: manifests\/registry\.ollama\.ai\/library\/second\/latest: needs blob sha256:[0-9a-f]{64}, which is neither in the bundle nor in this registry/);
  assert.match(r.stdout, /added {4}registry\.ollama\.ai\/library\/first:latest/);
  assert.deepEqual(await readdir(path.join(data, '.ollama-registry', 'tmp')), [], 'the partly received blob is not kept');
  assert.equal((await cli(['verify', '--data', data])).code, 0);
  await pullAndCompare(data, 'first:latest', first);
});

test('a tar with ../ paths, absolute paths or link entries: those entries are refused, nothing lands outside the store', async () => {
  const src = await tempDir();
  const good = await makeModel(src, { model: 'good', layers: [{ mediaType: MODEL, size: 1000, seed: 'g' }] });
  const root = await tempDir('oreg-hostile-');
  const data = path.join(root, 'data');
  const hex = good.blobs[0]!.digest.slice(7);
  const file = path.join(root, 'hostile.tar');
  await writeTar(file, [
    { name: '../evil', body: Buffer.from('escape') },
    { name: 'blobs/../../escape', body: Buffer.from('escape') },
    { name: '/tmp/absolute-evil', body: Buffer.from('escape') },
    { name: `blobs/sha256-${'1'.repeat(64)}`, type: 'symlink', linkname: '/etc/passwd' },
    { name: 'manifests/registry.ollama.ai/library/linked/latest', type: 'link', linkname: '../../../../etc/passwd' },
    ...(await bundleEntries(src, good, './manifests/registry.ollama.ai/library/good/latest')),
  ]);
  const r = await cli(['import', file, '--data', data]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad: \.\.\/evil: '\.\.' in the path refused/);
  assert.match(r.stderr, /bad: blobs\/\.\.\/\.\.\/escape: '\.\.' in the path refused/);
  assert.match(r.stderr, /bad: \/tmp\/absolute-evil: absolute path refused/);
  assert.match(r.stderr, /symbolic link entries are refused/);
  assert.match(r.stderr, /hard link entries are refused/);
  assert.match(r.stdout, /added {4}registry\.ollama\.ai\/library\/good:latest/);
  assert.match(r.stdout, /5 entry\(ies\) refused/);
  assert.deepEqual((await readdir(root)).sort(), ['data', 'hostile.tar']);
  assert.ok((await files(data)).every((f) => f.startsWith('blobs/') || f.startsWith('manifests/registry.ollama.ai/library/good/') || f.startsWith('.ollama-registry/')));
  assert.ok((await files(path.join(data, 'blobs'))).includes(`sha256-${hex}`));
  await assert.rejects(stat('/tmp/absolute-evil'));
});

test('classify: where a tar entry may go', () => {
  assert.deepEqual(classify('models/blobs/sha256-' + 'a'.repeat(64), 'file'), { kind: 'blob', digest: `sha256:${'a'.repeat(64)}` });
  assert.deepEqual(classify('manifests/hf.co/u/m/Q4', 'file'), { kind: 'manifest', ref: { host: 'hf.co', namespace: 'u', model: 'm', tag: 'Q4' } });
  assert.equal(classify('blobs/', 'directory').kind, 'ignore');
  assert.equal(classify('README', 'file').kind, 'ignore');
  assert.equal(classify('blobs/sha256-' + 'a'.repeat(64) + '-partial', 'file').kind, 'ignore');
  assert.equal(classify('C:/x', 'file').kind, 'refuse');
  assert.equal(classify('manifests/h/n/m/t', 'fifo').kind, 'refuse');
  assert.equal(classify('manifests/h/-bad/m/t', 'file').kind, 'refuse');
});
