// Three `serve` replicas on one Ceph bucket (test/support/replicas.ts), each with its own scratch
// folder and port, as behind a load balancer: a model pushed to one is pulled from another byte
// for byte; a cold model asked of all three at once crosses the upstream link once; the replica
// that owns the fill is killed -9 mid-way and another finishes it for every waiting client.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { blobKey, fillLeaseKey } from '../src/storage/layout.js';
import { leaseHolder } from '../src/storage/lease.js';
import { waitFor } from './support/eventually.js';
import { frontedUpstream } from './support/fault-upstream.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { makeOllamaKey, ollamaPull, ollamaPush } from './support/ollama-client.js';
import { startReplicas, withReplicas, type ReplicaSet } from './support/replicas.js';
import { tempDir } from './support/server.js';

const MiB = 1 << 20;
const MODEL = 'application/vnd.ollama.image.model';
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const link = frontedUpstream();


test('push to one replica, pull from another with the ollama client: byte for byte', { timeout: 180_000 }, async (t) => {
  const key = makeOllamaKey();
  await withReplicas(await startReplicas(t, { n: 3, keys: [{ key, namespace: 'team' }] }), async (set) => {
    const [a, b, c] = set.list;
    const clientDir = await tempDir('oreg-client-');
    const model = await makeModel(clientDir, {
      host: a!.hostPort, namespace: 'team', model: 'llm', tag: '1',
      layers: [
        { mediaType: MODEL, size: 5 * MiB + 7, seed: 'replicas push' },
        { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
      ],
    });
    const pushed = await ollamaPush(`${a!.hostPort}/team/llm:1`, { modelsDir: clientDir, key, partSize: MiB });
    assert.equal(pushed.uploaded.length, model.blobs.length);
    for (const r of [b!, c!]) {
      const other = await tempDir('oreg-pullback-');
      await ollamaPull(`${r.hostPort}/team/llm:1`, { modelsDir: other });
      assert.deepEqual(await readFile(path.join(other, 'manifests', r.hostPort, 'team', 'llm', '1')), pushed.manifestBytes);
      for (const bl of model.blobs) {
        const name = `sha256-${bl.digest.slice(7)}`;
        assert.deepEqual(await readFile(path.join(other, 'blobs', name)), await readFile(path.join(clientDir, 'blobs', name)), `${bl.digest} from ${r.name}`);
      }
    }
  });
});

/** A cold model upstream of `size` bytes behind a link of `rate` bytes/s; every replica has read its manifest. */
async function coldModel(set: ReplicaSet, tag: string, seed: string, size: number, rate: number) {
  const m = await makeModel(link.upstream.data, { model: 'cold', tag, layers: [{ mediaType: MODEL, size, seed }] });
  const blob = m.blobs.find((x) => x.size === size)!;
  link.front.reset();
  link.front.rate = rate;
  for (const r of set.list) {
    const res = await request(r.url, `/v2/library/cold/manifests/${tag}`);
    assert.equal(res.status, 200, `${r.name}: ${res.text().slice(0, 200)}`);
  }
  link.front.reset();
  const bytes = await readFile(path.join(link.upstream.data, 'blobs', `sha256-${blob.digest.slice(7)}`));
  return { digest: blob.digest, bytes };
}

test('a cold model asked of all three replicas at once crosses the upstream link once; every client gets the right bytes', { timeout: 180_000 }, async (t) => {
  await withReplicas(await startReplicas(t, { n: 3, args: ['--upstream', link.front.url] }), async (set) => {
    const size = 24 * MiB;
    const { digest, bytes } = await coldModel(set, 'once', 'scaleout once', size, 8 * MiB);
    // Two clients per replica, at once: whole blobs and one of ollama's parts.
    const gets = set.list.flatMap((r) => [
      request(r.url, `/v2/library/cold/blobs/${digest}`),
      request(r.url, `/v2/library/cold/blobs/${digest}`, { headers: { Range: `bytes=${8 * MiB}-${12 * MiB - 1}` } }),
    ]);
    const res = await Promise.all(gets);
    for (const [i, r] of res.entries()) {
      if (i % 2 === 0) {
        assert.equal(r.status, 200, r.text().slice(0, 300));
        assert.equal(sha(r.body), digest, `client ${i}`);
      } else {
        assert.equal(r.status, 206, r.text().slice(0, 300));
        assert.ok(r.body.equals(bytes.subarray(8 * MiB, 12 * MiB)), `client ${i}`);
      }
    }
    assert.equal(link.front.blobBytes(), size, 'upstream bytes = the blob\'s size');
    const st = await set.store().stat(blobKey(digest));
    assert.equal(st?.size, size, 'published in the bucket');
    // After the fill, any replica answers from the bucket without the upstream.
    const again = await request(set.list[2]!.url, `/v2/library/cold/blobs/${digest}`);
    assert.equal(sha(again.body), digest);
    assert.equal(link.front.blobBytes(), size);
  });
});

test('the replica that owns a fill is killed -9 mid-way: another takes it over and every waiting client gets the right bytes', { timeout: 180_000 }, async (t) => {
  await withReplicas(await startReplicas(t, { n: 3, args: ['--upstream', link.front.url] }), async (set) => {
    const size = 24 * MiB;
    const { digest } = await coldModel(set, 'kill', 'scaleout kill', size, 4 * MiB);
    const store = set.store();
    const first = request(set.list[0]!.url, `/v2/library/cold/blobs/${digest}`);
    first.catch(() => {});
    // The owner, from its lease in the bucket, once bytes flow into its scratch folder.
    const holder = await waitFor(async () => (link.front.blobBytes() >= 2 * MiB ? leaseHolder(store, fillLeaseKey(digest)) : undefined));
    const owner = set.list.findIndex((r) => r.url === holder!.url);
    assert.equal(owner, 0, `the owner is the replica asked first: ${holder!.url}`);
    assert.ok(existsSync(path.join(set.list[0]!.scratch, 'fills', `sha256-${digest.slice(7)}`)), 'staged in the owner\'s scratch folder');
    const waiting = [1, 2].map((i) => request(set.list[i]!.url, `/v2/library/cold/blobs/${digest}`));
    await waitFor(() => [1, 2].every((i) => /following it/.test(set.list[i]!.reg.output())));
    // Cut the link first, so that every blob byte counted from here on is the new owner's.
    await link.front.down();
    await set.kill(0);
    link.front.reset();
    link.front.rate = 0;
    await link.front.up();
    const res = await Promise.all(waiting);
    for (const r of res) {
      assert.equal(r.status, 200, r.text().slice(0, 300));
      assert.equal(sha(r.body), digest, 'the waiting client got the whole blob');
    }
    assert.equal([1, 2].filter((i) => /took over a fill/.test(set.list[i]!.reg.output())).length, 1, 'one replica took it over');
    assert.equal((await store.stat(blobKey(digest)))?.size, size, 'published in the bucket');
    // The killed owner's partial bytes were in its scratch folder only: the new owner fetches the blob once, whole.
    assert.equal(link.front.blobBytes(), size);
  });
});
