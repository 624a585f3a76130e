// Every storage driver passes the same suite (test/support/driver-suite.ts): the filesystem, an
// in-memory store, and S3 on a real Ceph RADOS Gateway.
import { FsDriver } from '../src/storage/fs.js';
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
