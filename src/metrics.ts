// Prometheus metrics (prom-client), one registry per App so that two servers in one process
// (tests) never share counts. Features increment the objects here; /metrics renders them.
//
// Counters other features own (left at zero until they land):
//   cacheLookups{result="hit"|"miss"}  pull-through: a blob or manifest answered from disk vs filled
//   fillsInFlight                       pull-through fills running now
//   upstreamErrors{upstream,reason}     failed upstream requests
//   bytesServed{source="upstream"}      call setBytesSource(res, 'upstream') on a response fed by a fill
import type { ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BlobStore } from './registry/blobs/blobs.js';
import type { Driver } from './storage/driver.js';
import { VERSION } from './version.js';

export type BytesSource = 'disk' | 'upstream';

export interface Metrics {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  duration: Histogram<'route'>;
  bytesServed: Counter<'route' | 'source'>;
  cacheLookups: Counter<'result'>;
  fillsInFlight: Gauge;
  upstreamErrors: Counter<'upstream' | 'reason'>;
  policyRefusals: Counter<'action'>;
  versionGated: Counter;
  passwordHashes: Counter;
}

const P = 'ollama_registry_';
// Blob totals need a stat per blob: recount at most this often, whatever the scrape interval.
const BLOB_RECOUNT_MS = 30_000;

export function createMetrics(driver: Driver, blobs: BlobStore, opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });

  new Gauge({ name: `${P}info`, help: 'Always 1; the version label says which release runs.', labelNames: ['version'], registers })
    .set({ version: VERSION }, 1);

  // One statfs per scrape, shared by the three gauges.
  let space: Promise<{ total: number; free: number } | null> | null = null;
  const spaceOnce = () => {
    if (!space) {
      space = (driver.space?.() ?? Promise.resolve(null)).catch(() => null);
      setImmediate(() => { space = null; });
    }
    return space;
  };
  const diskGauge = (name: string, help: string, pick: (s: { total: number; free: number }) => number) =>
    new Gauge({
      name: `${P}${name}`, help, registers,
      async collect() {
        const s = await spaceOnce();
        if (s) this.set(pick(s));
      },
    });
  diskGauge('disk_size_bytes', 'Size of the filesystem that holds the data folder.', (s) => s.total);
  diskGauge('disk_free_bytes', 'Bytes free (for this user) on the filesystem of the data folder.', (s) => s.free);
  diskGauge('disk_used_bytes', 'Bytes in use on the filesystem of the data folder (size - free).', (s) => s.total - s.free);

  let counted: { at: number; n: number; bytes: number } | null = null;
  const countBlobs = async () => {
    if (counted && Date.now() - counted.at < BLOB_RECOUNT_MS) return counted;
    const { count: n, bytes } = await blobs.usage();
    counted = { at: Date.now(), n, bytes };
    return counted;
  };
  new Gauge({
    name: `${P}blobs_bytes`, help: `Bytes in stored blobs (recounted at most every ${BLOB_RECOUNT_MS / 1000} s).`, registers,
    async collect() { this.set((await countBlobs()).bytes); },
  });
  new Gauge({
    name: `${P}blobs`, help: `Number of stored blobs (recounted at most every ${BLOB_RECOUNT_MS / 1000} s).`, registers,
    async collect() { this.set((await countBlobs()).n); },
  });

  const m: Metrics = {
    registry,
    requests: new Counter({ name: `${P}http_requests_total`, help: 'HTTP requests answered, by route, method and status.', labelNames: ['route', 'method', 'status'], registers }),
    duration: new Histogram({
      name: `${P}http_request_duration_seconds`, help: 'Time from request to the end of the response, by route.', labelNames: ['route'], registers,
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
    }),
    bytesServed: new Counter({
      name: `${P}http_response_bytes_total`, help: 'Response body bytes sent, by route and where they came from (disk or upstream).', labelNames: ['route', 'source'], registers,
    }),
    cacheLookups: new Counter({ name: `${P}cache_lookups_total`, help: 'Pull-through lookups: result="hit" answered from disk, "miss" needed the upstream.', labelNames: ['result'], registers }),
    fillsInFlight: new Gauge({ name: `${P}fills_in_flight`, help: 'Pull-through fills (downloads from an upstream) running now.', registers }),
    upstreamErrors: new Counter({ name: `${P}upstream_errors_total`, help: 'Failed requests to an upstream registry, by upstream and reason.', labelNames: ['upstream', 'reason'], registers }),
    policyRefusals: new Counter({ name: `${P}policy_refusals_total`, help: 'Requests refused by a policy rule, by action (pull, pull-through, push).', labelNames: ['action'], registers }),
    versionGated: new Counter({ name: `${P}version_gated_total`, help: 'Manifest requests answered 412 because the model requires a newer ollama.', registers }),
    passwordHashes: new Counter({ name: `${P}password_hashes_total`, help: 'scrypt runs for password checks (unknown user names cost one too).', registers }),
  };
  // Known label sets start at 0, so rates and ratios exist before the first event.
  for (const result of ['hit', 'miss']) m.cacheLookups.inc({ result }, 0);
  for (const action of ['pull', 'pull-through', 'push']) m.policyRefusals.inc({ action }, 0);
  return m;
}

const sources = new WeakMap<ServerResponse, BytesSource>();

/** Mark a response's body as coming from an upstream (pull-through) rather than from disk. */
export function setBytesSource(res: ServerResponse, source: BytesSource): void {
  sources.set(res, source);
}

export function bytesSource(res: ServerResponse): BytesSource {
  return sources.get(res) ?? 'disk';
}

/**
 * Count the body bytes handed to a response. The Content-Length header can't tell: it is
 * invisible to getHeader() when given to writeHead(), and a cut transfer sends less.
 */
export function countBodyBytes(res: ServerResponse): () => number {
  let n = 0;
  const size = (chunk: unknown, enc: unknown) => {
    if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof enc === 'string' ? (enc as BufferEncoding) : 'utf8');
    if (chunk instanceof Uint8Array) return chunk.byteLength;
    return 0;
  };
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    if (this.req?.method !== 'HEAD') n += size(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function' && this.req?.method !== 'HEAD') n += size(chunk, rest[0]);
    return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as ServerResponse['end'];
  return () => n;
}
