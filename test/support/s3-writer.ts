// A writer process for the abandoned-upload test: starts a streamed write of 60 MiB to the S3
// bucket named on the command line, says "started" once its parts are in the store, then waits
// to be killed (it never commits or cancels).
import { randomBytes } from 'node:crypto';
import { S3Driver } from '../../src/storage/s3.js';
import { S3_CREDENTIALS } from './s3.js';

const [endpoint, bucket, key] = process.argv.slice(2);
const d = new S3Driver({ endpoint, bucket: bucket!, credentials: S3_CREDENTIALS });
const w = await d.create(key!);
for (let i = 0; i < 60; i++) {
  if (!w.stream.write(randomBytes(1 << 20))) await new Promise((r) => w.stream.once('drain', r));
}
process.stdout.write('started\n');
setInterval(() => {}, 60_000);
