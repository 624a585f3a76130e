// The ollama emulation's HTTP client keeps connections as Go's net/http does, against the real
// registry behind a TCP relay that counts connections: at most 2 idle connections per host, a
// connection reused after its body was read to the end (also a 206 part), and a hang-up after a
// body left unread (however small: ollama's probe GET).
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { waitFor } from './support/eventually.js';
import { makeModel, type MadeModel } from './support/models.js';
import { ollamaPull } from './support/ollama-client.js';
import { discard, goDo, parseURL, readAll, Transport, type RequestLog } from './support/ollama-http.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

interface Relay {
  url: string;
  /** Connections accepted so far. */
  opened(): number;
  /** Connections the client has closed so far. */
  closedByClient(): number;
  close(): Promise<void>;
}

/** A TCP relay to `target` on its own loopback port: it only counts. */
async function startRelay(target: string): Promise<Relay> {
  const t = new URL(target);
  let opened = 0;
  let closedByClient = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((client) => {
    opened++;
    const upstream = net.connect(Number(t.port), t.hostname);
    sockets.add(client).add(upstream);
    // A hang-up is a FIN, or a reset when unread bytes were still in the client's buffer.
    let gone = false;
    const hungUp = () => {
      if (!gone) closedByClient++;
      gone = true;
    };
    client.on('end', hungUp).on('error', hungUp);
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    opened: () => opened,
    closedByClient: () => closedByClient,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      srv.close(() => r());
    }),
  };
}

let reg: TestRegistry;
let model: MadeModel;

before(async () => {
  reg = await startTestRegistry();
  model = await makeModel(reg.data, { model: 'conns', layers: [
    { mediaType: 'application/vnd.ollama.image.model', size: 300_000 },
    { mediaType: 'application/vnd.ollama.image.params', content: '{"temperature":0.7}' },
  ] });
});
after(() => reg.close());

const big = () => model.blobs.find((b) => b.size === 300_000)!;
const small = () => model.blobs.find((b) => b.mediaType.endsWith('params'))!;

async function withRelay(fn: (relay: Relay, t: Transport, url: (digest: string) => ReturnType<typeof parseURL>) => Promise<void>): Promise<void> {
  const relay = await startRelay(reg.url);
  const t = new Transport({ log: [] as RequestLog[] });
  try {
    await fn(relay, t, (d) => parseURL(`${relay.url}/v2/library/conns/blobs/${d}`));
  } finally {
    t.close();
    await relay.close();
  }
}

test('a ranged part read to the end (206) leaves its connection for the next request', async () => {
  await withRelay(async (relay, t, url) => {
    for (let i = 0; i < 4; i++) {
      const r = await goDo(t, { method: 'GET', url: url(big().digest), headers: { Range: `bytes=${i * 1000}-${i * 1000 + 999}` } });
      assert.equal(r.status, 206);
      assert.equal((await readAll(r)).length, 1000);
      discard(r);
    }
    assert.equal(relay.opened(), 1);
    assert.equal(relay.closedByClient(), 0);
  });
});

test('a body left unread is a hang-up, even a small one whose bytes have all arrived', async () => {
  await withRelay(async (relay, t, url) => {
    for (const b of [small(), big()]) {
      const before = relay.closedByClient();
      const probe = await goDo(t, { method: 'GET', url: url(b.digest) });
      assert.equal(probe.status, 200);
      discard(probe);
      await waitFor(() => relay.closedByClient() === before + 1, 5000);
    }
    // HEAD has no body: its connection stays.
    const head = await goDo(t, { method: 'HEAD', url: url(small().digest) });
    discard(head);
    const again = await goDo(t, { method: 'HEAD', url: url(small().digest) });
    discard(again);
    assert.equal(relay.opened(), 3);
  });
});

test('at most 2 idle connections per host are kept', async () => {
  await withRelay(async (relay, t, url) => {
    const round = () => Promise.all([0, 1, 2, 3].map(async () => {
      const r = await goDo(t, { method: 'GET', url: url(big().digest), headers: { Range: 'bytes=0-99' } });
      await readAll(r);
      discard(r);
    }));
    await round();
    assert.equal(relay.opened(), 4);
    await waitFor(() => relay.closedByClient() === 2, 5000);
    await round();
    // Two came from the idle pool, two are new.
    assert.equal(relay.opened(), 6);
  });
});

test('a whole pull with parts one after another: the parts share a connection', async () => {
  await withRelay(async (relay) => {
    const modelsDir = await tempDir('oreg-client-');
    const host = new URL(relay.url).host;
    const res = await ollamaPull(`${host}/library/conns:latest`, { modelsDir, partSize: { numParts: 1, minPartSize: 50_000, maxPartSize: 50_000 } });
    const parts = res.requests.filter((r) => r.reqHeaders.range);
    assert.ok(parts.length >= 6, `${parts.length} parts`);
    // Manifest, and per blob a HEAD, the probe (hung up) and its parts: one connection per probe, one more at the start.
    const probes = res.requests.filter((r) => r.method === 'GET' && !r.reqHeaders.range && r.url.includes('/blobs/')).length;
    assert.equal(relay.opened(), probes + 1, res.requests.map((r) => `${r.method} ${r.status} ${r.reqHeaders.range ?? ''}`).join('\n'));
  });
});
