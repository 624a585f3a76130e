// Every storage driver passes the same suite (test/support/driver-suite.ts): the filesystem, an
// in-memory store, and S3 on a real Ceph RADOS Gateway.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { FsDriver } from '../src/storage/fs.js';
import { casGuardKey } from '../src/storage/layout.js';
import { MemoryDriver } from '../src/storage/memory.js';
import { driverSuite } from './support/driver-suite.js';
import { s3Driver, s3Endpoint } from './support/s3.js';
import { tempDir } from './support/server.js';

driverSuite('fs driver', async () => new FsDriver(await tempDir('oreg-driver-')));
driverSuite('memory driver', async () => new MemoryDriver());
driverSuite('s3 driver (Ceph)', async (t) => {
  const endpoint = await s3Endpoint(t);
  return endpoint ? s3Driver(endpoint, { prefix: 'models' }) : null;
});

test('fs driver: a guard left by a writer killed mid-swap (kill -9) stops blocking its key once that process is gone, and not before', async () => {
  const dir = await tempDir('oreg-driver-');
  const d = new FsDriver(dir);
  assert.ok(await d.createIfAbsent('leases/x', Buffer.from('a')));
  const v = (await d.readVersioned('leases/x'))!.version;
  // A process of this host holds the key's guard, as a writer does for a few ms inside replaceIf.
  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const guard = path.join(dir, casGuardKey('leases/x'));
  await mkdir(path.dirname(guard), { recursive: true });
  await writeFile(guard, `${hostname()} ${holder.pid}`);
  let settled = false;
  const swap = d.replaceIf('leases/x', Buffer.from('b'), v).finally(() => { settled = true; });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(settled, false, 'a live writer\'s guard holds the key');
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  // Gone: the guard is broken at once, long before it would count as stale by its age (10 s).
  const within = await Promise.race([swap.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  assert.ok(within, 'the swap went through after its holder died');
  assert.ok(await swap);
  assert.equal((await d.readAll('leases/x')).toString(), 'b');
});
