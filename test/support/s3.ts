// The S3 the tests use: Ceph's RADOS Gateway (scripts/s3-test-server.sh), a real server that
// checks signatures. scripts/test.sh starts one for the whole run and sets OREG_S3_ENDPOINT; a
// test file run alone starts its own. Each test gets a bucket of its own.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { TestContext } from 'node:test';
import { S3Driver, type S3Options } from '../../src/storage/s3.js';
import { fileURLToPath } from 'node:url';
import { skipOrFail } from './ci.js';

const run = promisify(execFile);
const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../scripts/s3-test-server.sh');
export const S3_CREDENTIALS = {
  accessKeyId: process.env.S3_ACCESS_KEY ?? 'testaccess',
  secretAccessKey: process.env.S3_SECRET_KEY ?? 'testsecret',
};

let started: Promise<string> | undefined;

async function startOwn(): Promise<string> {
  return (await startCeph()).endpoint;
}

/** A Ceph of this test file's own, whose gateway a test may stop, freeze and start again. */
export interface OwnCeph {
  endpoint: string;
  stopGateway(): Promise<void>;
  startGateway(): Promise<void>;
  /** SIGSTOP (true) or SIGCONT (false) the gateway: a store that accepts connections and never answers. */
  freezeGateway(frozen: boolean): void;
  /** Stops every daemon and starts the cluster again on its data (bluestore only). */
  restartAll(): Promise<void>;
}

async function startCeph(store: 'memstore' | 'bluestore' = 'memstore'): Promise<OwnCeph> {
  // Not a tempDir(): those are removed at exit before this file's handler could read the pids.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'oreg-ceph-'));
  const base = 41000 + 100 * Math.floor(Math.random() * 180);
  const env = { ...process.env, MON_PORT: String(base), RGW_PORT: String(base + 99 + 1), CEPH_STORE: store };
  // Synchronous at exit: stop the daemons this file started, then remove their folder.
  process.once('exit', () => {
    try {
      execFileSync(SCRIPT, ['stop', dir], { timeout: 30_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const { stdout } = await run(SCRIPT, ['start', dir], { env, timeout: 120_000 });
  const gatewayPid = (): number => Number(/^rgw (\d+)$/m.exec(readFileSync(path.join(dir, 'pids'), 'utf8'))?.[1]);
  return {
    endpoint: stdout.trim().split('\n').pop()!,
    stopGateway: async () => void await run(SCRIPT, ['stop-rgw', dir], { env, timeout: 30_000 }),
    startGateway: async () => void await run(SCRIPT, ['start-rgw', dir], { env, timeout: 90_000 }),
    freezeGateway: (frozen) => process.kill(gatewayPid(), frozen ? 'SIGSTOP' : 'SIGCONT'),
    restartAll: async () => void await run(SCRIPT, ['restart', dir], { env, timeout: 180_000 }),
  };
}

/** A dedicated Ceph (never the shared one: tests stop its gateway), or null (with the reason) where none can be had. */
export async function ownCeph(t: TestContext, store: 'memstore' | 'bluestore' = 'memstore'): Promise<OwnCeph | null> {
  try {
    return await startCeph(store);
  } catch (e) {
    skipOrFail(t, `no Ceph S3 here: ${(e as Error).message.split('\n')[0]}`);
    return null;
  }
}

/** The endpoint of a running Ceph S3, or null (with the reason) where none can be had. */
export async function s3Endpoint(t: TestContext): Promise<string | null> {
  if (process.env.OREG_S3_ENDPOINT) return process.env.OREG_S3_ENDPOINT;
  try {
    started ??= startOwn();
    return await started;
  } catch (e) {
    skipOrFail(t, `no Ceph S3 here: ${(e as Error).message.split('\n')[0]}`);
    return null;
  }
}

/** A new, empty bucket on the test S3. */
export async function newBucket(endpoint: string): Promise<string> {
  const bucket = `oreg-${randomBytes(6).toString('hex')}`;
  const c = new S3Client({
    endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_CREDENTIALS, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    // A gateway that accepts the connection and never answers must not hang the test.
    await c.send(new CreateBucketCommand({ Bucket: bucket }), { abortSignal: AbortSignal.timeout(60_000) });
  } finally {
    c.destroy();
  }
  return bucket;
}

export async function s3Driver(endpoint: string, extra: Partial<S3Options> = {}): Promise<S3Driver> {
  return new S3Driver({ endpoint, bucket: await newBucket(endpoint), credentials: S3_CREDENTIALS, ...extra });
}
