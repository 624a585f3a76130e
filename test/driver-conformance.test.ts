// Every storage driver passes the same suite (test/support/driver-suite.ts).
import { FsDriver } from '../src/storage/fs.js';
import { MemoryDriver } from '../src/storage/memory.js';
import { driverSuite } from './support/driver-suite.js';
import { tempDir } from './support/server.js';

driverSuite('fs driver', async () => new FsDriver(await tempDir('oreg-driver-')));
driverSuite('memory driver', async () => new MemoryDriver());
