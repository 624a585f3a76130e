// kill -9 of the registry in the middle of a fill, then a restart: the fill resumes by itself,
// once the dead process's lease expired, and the ranges already recorded as filled are not
// fetched from the upstream again.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { FsDriver } from '../src/storage/fs.js';
import { fillLeaseKey } from '../src/storage/layout.js';
import { acquireLease } from '../src/storage/lease.js';
import { startFaultUpstream } from './support/fault-upstream.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { spawnRegistry, startTestRegistry, tempDir } from './support/server.js';
import { waitFor } from './support/eventually.js';

const MiB = 1 << 20;
const LEASE = { OLLAMA_REGISTRY_LEASE: '2' }; // a killed owner's lease is free after 2 s

test('kill -9 mid-fill, restart: the fill resumes and filled ranges are not fetched again', async () => {
  const upstream = await startTestRegistry();
  const m = await makeModel(upstream.data, { model: 'resume', tag: 'v1', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 40 * MiB }] });
  const b = m.blobs[0]!;
  const front = await startFaultUpstream(upstream.url, { rate: 10 * MiB });
  const data = await tempDir();
  const statePath = path.join(data, '.ollama-registry', 'scratch', 'fills', `sha256-${b.digest.slice(7)}`, 'state.json');
  try {
    const first = await spawnRegistry(['--data', data, '--upstream', front.url], LEASE);
    // The manifest first, as ollama asks: blobs are read through a repository that references them.
    assert.equal((await request(first.url, '/v2/library/resume/manifests/v1')).status, 200);
    // A client starts the fill, then the registry dies hard while bytes are flowing.
    const req = http.get(`${first.url}/v2/library/resume/blobs/${b.digest}`, { agent: false }, (res) => res.resume());
    req.on('error', () => {});
    const persisted = await waitFor(async () => {
      if (!existsSync(statePath)) return undefined;
      const st = JSON.parse(await readFile(statePath, 'utf8')) as { have: Array<[number, number]> };
      const sum = st.have.reduce((n, [a, z]) => n + z - a, 0);
      return sum >= 8 * MiB ? st : undefined;
    });
    await first.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    const st = JSON.parse(await readFile(statePath, 'utf8')) as { have: Array<[number, number]> };
    const kept = st.have.reduce((n, [a, z]) => n + z - a, 0);
    assert.ok(kept >= persisted.have.reduce((n, [a, z]) => n + z - a, 0));
    assert.ok(kept < b.size, 'killed before the end');
    front.reset();
    front.rate = 0;

    const second = await spawnRegistry(['--data', data, '--upstream', front.url], LEASE);
    try {
      // The restarted registry resumes on its own; a client meanwhile gets the right bytes.
      const r = await request(second.url, `/v2/library/resume/blobs/${b.digest}`);
      assert.equal(r.status, 200);
      assert.equal(`sha256:${createHash('sha256').update(r.body).digest('hex')}`, b.digest);
      await waitFor(() => existsSync(path.join(data, 'blobs', `sha256-${b.digest.slice(7)}`)));
      assert.equal(front.blobBytes(), b.size - kept, 'only the missing ranges crossed the link again');
      for (const q of front.requests.filter((x) => x.range)) {
        const [, s, e] = /bytes=(\d+)-(\d+)/.exec(q.range!)!.map(Number);
        for (const [a, z] of st.have) assert.ok(e! < a || s! >= z, `range ${q.range} overlaps filled [${a},${z})`);
      }
      assert.match(second.output(), /resuming/);
    } finally {
      await second.stop();
    }
  } finally {
    await front.close();
    await upstream.close();
  }
});

test('a fill lease left by a process that is gone (and never answers) expires, and the fill is taken over for the waiting client', { timeout: 30_000 }, async () => {
  const upstream = await startTestRegistry();
  const m = await makeModel(upstream.data, { model: 'reused', tag: 'v1', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 2 * MiB }] });
  const b = m.blobs[0]!;
  const data = await tempDir();
  const reg = await spawnRegistry(['--data', data, '--upstream', upstream.url], LEASE);
  try {
    // The lease of a process on another machine that died: its URL leads nowhere. Taken once the
    // registry is up, so a slow start cannot outlast it.
    const taken = await acquireLease(new FsDriver(data), fillLeaseKey(b.digest), { owner: 'gone', host: 'elsewhere', url: 'http://127.0.0.1:9' }, 3000);
    assert.ok('lease' in taken);
    assert.equal((await request(reg.url, '/v2/library/reused/manifests/v1')).status, 200);
    const r = await request(reg.url, `/v2/library/reused/blobs/${b.digest}`);
    assert.equal(r.status, 200, r.text());
    assert.equal(`sha256:${createHash('sha256').update(r.body).digest('hex')}`, b.digest);
    assert.match(reg.output(), /following it/);
    assert.match(reg.output(), /took over a fill/);
  } finally {
    await reg.stop();
    await upstream.close();
  }
});
