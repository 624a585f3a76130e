// Graceful shutdown: SIGTERM lets an in-flight download finish, refuses new connections, exits 0.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from './support/http.js';
import { makeModel } from './support/models.js';
import { spawnRegistry, tempDir } from './support/server.js';

test('SIGTERM finishes in-flight downloads, then exits cleanly', async () => {
  const data = await tempDir();
  const m = await makeModel(data, { model: 'big', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 64 << 20, seed: 'big' }] });
  const digest = m.blobs.find((b) => b.size === 64 << 20)!.digest;
  const reg = await spawnRegistry(['--data', data]);
  const url = new URL(`/v2/library/big/blobs/${digest}`, reg.url);
  let received = 0;
  let started!: () => void;
  const inFlight = new Promise<void>((r) => (started = r));
  const done = new Promise<number>((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      res.pause();
      started();
      // Read slowly at first so the download is still running when the signal comes.
      setTimeout(() => {
        res.on('data', (c: Buffer) => { received += c.length; });
        res.on('end', () => resolve(received));
        res.on('error', reject);
        res.resume();
      }, 500);
    }).on('error', reject);
  });
  // The download is in flight once its response has begun (a connection whose request has not
  // arrived yet is idle, and closing idle connections is part of shutting down).
  await inFlight;
  const stopped = reg.stop('SIGTERM');
  await sleep(100);
  await assert.rejects(request(reg.url, '/v2/'), /ECONNREFUSED/);
  assert.equal(await done, 64 << 20);
  const exit = await stopped;
  assert.equal(exit.code, 0, reg.output());
  assert.match(reg.output(), /shutting down/);
});

test('serve reports a port in use as a one-line error with exit code 1', async () => {
  const data = await tempDir();
  const a = await spawnRegistry(['--data', data]);
  try {
    await assert.rejects(spawnRegistry(['--data', data, '--listen', a.hostPort]), /exited \(1\)[\s\S]*ollama-registry: cannot listen/);
  } finally {
    await a.stop();
  }
});
