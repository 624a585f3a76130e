// Folders a killed registry (kill -9) leaves that nobody can continue: a fill killed before it
// recorded any progress (no state.json, its owner's lease expired) and an upload folder without its
// info.json. `gc` removes them without waiting for the 24 h sweep, and keeps what can resume.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './support/cli.js';
import { waitFor } from './support/eventually.js';
import { startFaultUpstream } from './support/fault-upstream.js';
import { request } from './support/http.js';
import { makeModel, sha256Hex } from './support/models.js';
import { spawnRegistry, startTestRegistry, tempDir } from './support/server.js';

const MiB = 1 << 20;

test('kill -9 mid-fill and mid-upload: gc --grace 0 removes what nobody can continue, keeps the resumable session', { timeout: 60_000 }, async () => {
  const upstream = await startTestRegistry();
  const m = await makeModel(upstream.data, { model: 'stuck', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 4 * MiB }] });
  const b = m.blobs[0]!;
  // The upstream answers the blob's headers, then nothing: the fill never records progress.
  const front = await startFaultUpstream(upstream.url);
  front.fault = (r) => (r.method === 'GET' && r.path.includes('/blobs/') ? { kind: 'stall', after: 0 } : undefined);
  const data = await tempDir();
  const fills = path.join(data, '.ollama-registry', 'scratch', 'fills');
  const uploads = path.join(data, '.ollama-registry', 'uploads');
  const fillDir = path.join(fills, `sha256-${b.digest.slice(7)}`);
  try {
    const reg = await spawnRegistry(['--data', data, '--upstream', front.url], { OLLAMA_REGISTRY_LEASE: '1' });
    assert.equal((await cli(['users', 'add', 'ci', '--namespace', 'team', '--data', data], { stdin: Buffer.from('password1\n') })).code, 0);
    const auth = { Authorization: `Basic ${Buffer.from('ci:password1').toString('base64')}` };
    // The manifest first, as ollama asks: blobs are read through a repository that references them.
    assert.equal((await request(reg.url, '/v2/library/stuck/manifests/latest')).status, 200);
    const req = http.get(`${reg.url}/v2/library/stuck/blobs/${b.digest}`, { agent: false }, (res) => res.resume());
    req.on('error', () => {});
    await waitFor(() => existsSync(path.join(fillDir, 'data')));
    // A push session with bytes in it: resumable after a restart, so it must stay.
    const open = await waitFor(async () => {
      const r = await request(reg.url, '/v2/team/m/blobs/uploads/', { method: 'POST', headers: auth });
      return r.status === 202 ? r : undefined;
    });
    const loc = new URL(String(open.headers.location)).pathname;
    const part = Buffer.from('first part of a layer');
    assert.equal((await request(reg.url, loc, { method: 'PATCH', headers: { ...auth, 'Content-Range': `0-${part.length - 1}` }, body: part })).status, 202);
    await reg.stop('SIGKILL');
    // What a process killed inside a session's creation leaves: bytes in the scratch folder without a record.
    const torn = path.join(data, '.ollama-registry', 'scratch', 'uploads', '4f0c1e2a-3b5d-4c6e-8f70-91a2b3c4d5e6');
    await mkdir(path.dirname(torn), { recursive: true });
    await writeFile(torn, Buffer.alloc(64 << 10, 1));
    assert.ok(existsSync(path.join(fillDir, 'data')), 'the killed fill left its data');
    assert.ok(!existsSync(path.join(fillDir, 'state.json')), 'and no record of progress');
    await new Promise((r) => setTimeout(r, 1500)); // its lease (1 s) expires: nobody owns the fill any more

    const r = await cli(['gc', '--grace', '0', '--json', '--data', data]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { staging: { removed: string[] } };
    assert.deepEqual(report.staging.removed, ['.ollama-registry/uploads/4f0c1e2a-3b5d-4c6e-8f70-91a2b3c4d5e6']);
    // The fill went as the command opened the data folder (as every command and start-up does).
    assert.deepEqual(await readdir(fills), []);
    assert.deepEqual(await readdir(uploads), [loc.split('/').pop()]);
    assert.deepEqual(await readdir(path.dirname(torn)), [loc.split('/').pop()]);

    // The kept session goes on after a restart, and the blob can be filled again.
    front.fault = undefined;
    const again = await spawnRegistry(['--data', data, '--upstream', front.url]);
    try {
      const rest = Buffer.from(' and the rest');
      const whole = Buffer.concat([part, rest]);
      const put = await request(again.url, `${loc}?digest=sha256:${sha256Hex(whole)}`, { method: 'PUT', headers: { ...auth, 'Content-Range': `${part.length}-${whole.length - 1}` }, body: rest });
      assert.equal(put.status, 201, put.text());
      const got = await request(again.url, `/v2/library/stuck/blobs/${b.digest}`);
      assert.equal(got.status, 200);
      assert.equal(`sha256:${sha256Hex(got.body)}`, b.digest);
    } finally {
      await again.stop();
    }
  } finally {
    await front.close();
    await upstream.close();
  }
});

test('serve removes, at start-up, a fill a killed process left without any record of its progress', { timeout: 30_000 }, async () => {
  const data = await tempDir();
  const hex = sha256Hex('never recorded');
  const dir = path.join(data, '.ollama-registry', 'scratch', 'fills', `sha256-${hex}`);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'data'), Buffer.alloc(1 * MiB, 5));
  // No lease names it: whoever wrote it is gone.
  const upstream = await startTestRegistry();
  const reg = await spawnRegistry(['--data', data, '--upstream', upstream.url]);
  try {
    await waitFor(() => !existsSync(dir));
  } finally {
    await reg.stop();
    await upstream.close();
  }
});
