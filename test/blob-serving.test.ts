// How stored blob bytes reach sockets (src/storage/fs.ts copyTo): whole and ranged bodies byte for
// byte across buffer boundaries, and a client that stops reading or hangs up never keeps the file open.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { waitFor } from './support/eventually.js';
import { makeModel, type BlobInfo } from './support/models.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let blob: BlobInfo;
const SIZE = 24 * 1024 * 1024 + 12345; // past any socket buffer, and not a multiple of the read size

before(async () => {
  reg = await startTestRegistry();
  const m = await makeModel(reg.data, { model: 'big', tag: 'latest', layers: [{ mediaType: 'application/vnd.ollama.image.model', size: SIZE }] });
  blob = m.blobs.find((b) => b.size === SIZE)!;
});
after(() => reg.close());

/** This process's open descriptors on the blob's file (the test registry runs in-process). */
function openOnBlob(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).endsWith(`sha256-${blob.digest.slice(7)}`)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

function get(range?: string): Promise<{ status: number; sha: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${reg.url}/v2/library/big/blobs/${blob.digest}`, { agent: false, headers: range ? { Range: range } : {} }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode!, sha: h.digest('hex'), bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test('whole and ranged bodies are the stored bytes, across read-buffer boundaries', async () => {
  const whole = await get();
  assert.equal(whole.status, 200);
  assert.equal(whole.bytes, SIZE);
  assert.equal(`sha256:${whole.sha}`, blob.digest);
  // 16 parts at once, as ollama asks for them; the last one is the odd remainder.
  const part = Math.floor(SIZE / 16);
  const parts = await Promise.all(Array.from({ length: 16 }, (_, i) => get(`bytes=${i * part}-${i === 15 ? SIZE - 1 : (i + 1) * part - 1}`)));
  assert.equal(parts.reduce((a, p) => a + p.bytes, 0), SIZE);
  for (const p of parts) assert.equal(p.status, 206);
  const mid = await get('bytes=262143-262144'); // the two bytes either side of the first buffer's end
  assert.equal(mid.status, 206);
  assert.equal(mid.bytes, 2);
});

test('a client that stops reading and then hangs up does not keep the blob open', async () => {
  const req = http.get(`${reg.url}/v2/library/big/blobs/${blob.digest}`, { agent: false });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  assert.equal(res.statusCode, 200);
  // Read one chunk, then stop: the server's writes stall on a full socket with the file open.
  await new Promise<void>((resolve) => res.once('data', () => resolve()));
  res.pause();
  await waitFor(() => openOnBlob() > 0, 10_000);
  req.destroy();
  await waitFor(() => openOnBlob() === 0, 10_000);
  // The server still serves the blob after that.
  assert.equal((await get('bytes=0-9')).bytes, 10);
});
