// /metrics, /healthz, /readyz and the request log, against a real server on loopback.
import assert from 'node:assert/strict';
import http from 'node:http';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../src/log.js';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { spawnRegistry, startTestRegistry, tempDir } from './support/server.js';
import { eventually } from './support/eventually.js';

/** The value of one sample in Prometheus text: the line whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(base: string): Promise<string> {
  const r = await request(base, '/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return r.text();
}

test('metrics move as requests happen: requests by route and status, bytes served, durations, disk', async (t) => {
  const data = await tempDir();
  const model = await makeModel(data, { model: 'tiny' });
  const reg = await startTestRegistry({ data });
  t.after(reg.close);
  const blob = model.blobs[0]!;
  const base = await scrape(reg.url);
  const req = (labels: Record<string, string>) => sample(base, 'ollama_registry_http_requests_total', labels) ?? 0;
  const bytes0 = sample(base, 'ollama_registry_http_response_bytes_total', { route: 'blob', source: 'disk' }) ?? 0;

  assert.equal((await request(reg.url, '/v2/library/tiny/manifests/latest')).status, 200);
  assert.equal((await request(reg.url, `/v2/library/tiny/blobs/${blob.digest}`, { method: 'HEAD' })).status, 200);
  assert.equal((await request(reg.url, `/v2/library/tiny/blobs/${blob.digest}`, { headers: { Range: 'bytes=0-99' } })).status, 206);
  assert.equal((await request(reg.url, `/v2/library/tiny/blobs/${blob.digest}`)).status, 200);
  assert.equal((await request(reg.url, '/v2/library/nope/manifests/latest')).status, 404);

  await eventually(async () => {
    const now = await scrape(reg.url);
    const delta = (labels: Record<string, string>) => (sample(now, 'ollama_registry_http_requests_total', labels) ?? 0) - req(labels);
    assert.equal(delta({ route: 'manifest', method: 'GET', status: '200' }), 1);
    assert.equal(delta({ route: 'manifest', method: 'GET', status: '404' }), 1);
    assert.equal(delta({ route: 'blob', method: 'HEAD', status: '200' }), 1);
    assert.equal(delta({ route: 'blob', method: 'GET', status: '206' }), 1);
    assert.equal(delta({ route: 'blob', method: 'GET', status: '200' }), 1);
    // HEAD sends no body: the range (100 bytes) plus the whole blob.
    assert.equal(sample(now, 'ollama_registry_http_response_bytes_total', { route: 'blob', source: 'disk' })! - bytes0, 100 + blob.size);
    assert.equal(sample(now, 'ollama_registry_http_response_bytes_total', { route: 'manifest', source: 'disk' }),
      model.manifestBytes.length + Buffer.byteLength((await request(reg.url, '/v2/library/nope/manifests/latest')).body));
    assert.ok(sample(now, 'ollama_registry_http_request_duration_seconds_count', { route: 'blob' })! >= 3);
  });

  const now = await scrape(reg.url);
  assert.ok(sample(now, 'ollama_registry_disk_free_bytes')! > 0);
  assert.ok(sample(now, 'ollama_registry_disk_size_bytes')! >= sample(now, 'ollama_registry_disk_free_bytes')!);
  assert.equal(sample(now, 'ollama_registry_disk_used_bytes'), sample(now, 'ollama_registry_disk_size_bytes')! - sample(now, 'ollama_registry_disk_free_bytes')!);
  assert.equal(sample(now, 'ollama_registry_blobs'), model.blobs.length);
  assert.equal(sample(now, 'ollama_registry_blobs_bytes'), model.blobs.reduce((n, b) => n + b.size, 0));
  // Metrics the pull-through cache drives exist (at zero) before it does anything.
  assert.equal(sample(now, 'ollama_registry_cache_lookups_total', { result: 'hit' }), 0);
  assert.equal(sample(now, 'ollama_registry_cache_lookups_total', { result: 'miss' }), 0);
  assert.equal(sample(now, 'ollama_registry_fills_in_flight'), 0);
  assert.ok(now.includes('# TYPE ollama_registry_upstream_errors_total counter'));
  assert.ok(sample(now, 'process_resident_memory_bytes')! > 0, 'process metrics too');
  // Counters upstream fills will drive are shared objects on app.metrics.
  reg.app.metrics.cacheLookups.inc({ result: 'hit' });
  assert.equal(sample(await scrape(reg.url), 'ollama_registry_cache_lookups_total', { result: 'hit' }), 1);
});

test('/healthz answers while the process runs; /readyz checks storage is writable and leaves nothing behind', async (t) => {
  const reg = await startTestRegistry();
  t.after(reg.close);
  const h = await request(reg.url, '/healthz');
  assert.equal(h.status, 200);
  assert.deepEqual(h.json(), { status: 'ok' });
  assert.equal((await request(reg.url, '/healthz', { method: 'HEAD' })).status, 200);
  assert.equal((await request(reg.url, '/healthz', { method: 'POST' })).status, 405);

  const r = await request(reg.url, '/readyz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { status: 'ready', checks: { storage: 'ok', disk: 'ok', config: 'ok' } });
  const state = path.join(reg.data, '.ollama-registry');
  assert.deepEqual((await readdir(state)).filter((f) => f.startsWith('readyz')), []);
  assert.deepEqual(await readdir(path.join(state, 'tmp')), []);

  // A fault: the staging folder is a file, so nothing can be written.
  await rm(path.join(state, 'tmp'), { recursive: true });
  await writeFile(path.join(state, 'tmp'), 'in the way');
  const bad = await request(reg.url, '/readyz');
  assert.equal(bad.status, 503);
  assert.equal(bad.json().status, 'not ready');
  assert.match(bad.json().checks.storage, /^not writable: /);
  assert.equal((await request(reg.url, '/healthz')).status, 200, 'still alive, just not ready');
  await rm(path.join(state, 'tmp'));
  assert.equal((await request(reg.url, '/readyz')).status, 200);
});

test('the request log: one JSON line per request with route, status, the bytes really sent, duration', async () => {
  const data = await tempDir();
  const model = await makeModel(data, { model: 'logged', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 64 << 20 }] });
  const reg = await spawnRegistry(['--data', data]);
  try {
    const blob = model.blobs[0]!;
    const blobPath = `/v2/library/logged/blobs/${blob.digest}`;
    await request(reg.url, '/v2/library/logged/manifests/latest');
    await request(reg.url, blobPath, { headers: { Range: 'bytes=10-1033' } });
    await request(reg.url, blobPath, { method: 'HEAD' });
    // A client that hangs up after the first chunk of a 64 MiB body.
    await new Promise<void>((resolve, reject) => {
      const u = new URL(reg.url);
      http.get({ host: u.hostname, port: u.port, path: blobPath, agent: false }, (res) => {
        res.once('data', () => {
          res.destroy();
          resolve();
        });
      }).on('error', reject);
    });
    let lines: Array<Record<string, any>> = [];
    await eventually(async () => {
      lines = reg.output().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.msg === 'request');
      assert.equal(lines.length, 4);
    }, 5000);
    const [mf, ranged, head, cut] = lines as [Record<string, any>, Record<string, any>, Record<string, any>, Record<string, any>];
    assert.equal(mf.route, 'manifest');
    assert.equal(mf.status, 200);
    assert.equal(mf.bytes, model.manifestBytes.length);
    assert.equal(mf.method, 'GET');
    assert.equal(typeof mf.ms, 'number');
    assert.equal(typeof mf.time, 'number');
    assert.equal(mf.level, 30);
    assert.deepEqual([ranged.route, ranged.status, ranged.bytes, ranged.aborted], ['blob', 206, 1024, undefined]);
    assert.deepEqual([head.status, head.bytes], [200, 0], 'HEAD: Content-Length is the size, but no body is sent');
    assert.equal(cut.aborted, true);
    assert.equal(cut.status, 200);
    assert.ok(cut.bytes > 0 && cut.bytes < blob.size, `a cut transfer logs what was sent (${cut.bytes}), not the Content-Length`);
  } finally {
    await reg.stop();
  }
});

test('logs are readable text when stdout is a terminal', () => {
  let out = '';
  const tty = Object.assign(new Writable({ write(c: Buffer, _e, done) { out += c.toString(); done(); } }), { isTTY: true });
  createLogger({ destination: tty }).info({ route: 'blob', status: 206, bytes: 1024 }, 'request');
  assert.match(out, /^\d\d:\d\d:\d\d info {2}request route=blob status=206 bytes=1024\n$/);
  out = '';
  createLogger({ destination: Object.assign(new Writable({ write(c: Buffer, _e, done) { out += c.toString(); done(); } }), { isTTY: false }) })
    .info({ route: 'blob' }, 'request');
  assert.equal(JSON.parse(out).route, 'blob');
});
