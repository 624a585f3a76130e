// Worker thread for `verify`: hashes whole files so several blobs are hashed on several cores.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { parentPort } from 'node:worker_threads';

const REPORT_EVERY = 64 << 20;

parentPort!.on('message', async ({ id, file }: { id: number; file: string }) => {
  try {
    const h = createHash('sha256');
    let size = 0;
    let reported = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size - reported >= REPORT_EVERY) {
        parentPort!.postMessage({ id, progress: size - reported });
        reported = size;
      }
    }
    parentPort!.postMessage({ id, progress: size - reported, digest: `sha256:${h.digest('hex')}`, size });
  } catch (e) {
    parentPort!.postMessage({ id, error: (e as Error).message, code: (e as NodeJS.ErrnoException).code });
  }
});
