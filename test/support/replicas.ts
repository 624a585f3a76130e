// N `serve` processes on one S3 bucket and prefix, as an operator runs replicas behind a load
// balancer: spawned as a user would (the built CLI, OLLAMA_REGISTRY_S3_* and AWS credentials in
// the environment), each with its own data folder (only its scratch area lives there), its own
// scratch folder and its own loopback port. Leases are short so a killed replica's work is taken
// over quickly.
import path from 'node:path';
import type { TestContext } from 'node:test';
import { S3Driver } from '../../src/storage/s3.js';
import { cli } from './cli.js';
import type { OllamaKey } from './ollama-client.js';
import { newBucket, S3_CREDENTIALS, s3Endpoint } from './s3.js';
import { spawnRegistry, tempDir, type SpawnedRegistry } from './server.js';

export interface Replica {
  name: string;
  reg: SpawnedRegistry;
  url: string;
  hostPort: string;
  data: string;
  scratch: string;
}

export interface ReplicaSet {
  endpoint: string;
  bucket: string;
  prefix: string;
  /** The environment every replica runs with (the store and its credentials). */
  env: NodeJS.ProcessEnv;
  list: Replica[];
  /** A driver on the replicas' bucket and prefix, to look at what they stored. */
  store(): S3Driver;
  /** Start one more replica on the same bucket (e.g. after one was killed). */
  add(extraEnv?: NodeJS.ProcessEnv): Promise<Replica>;
  /** kill -9 one replica (by index); it leaves whatever it was doing where it was. */
  kill(i: number): Promise<void>;
  /** Everything every replica logged, for a failing test's message. */
  output(): string;
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  n: number;
  prefix?: string;
  /** Extra `serve` arguments (e.g. `--upstream URL`). */
  args?: string[];
  /** Extra environment for every replica. */
  env?: NodeJS.ProcessEnv;
  /** Public keys allowed to push to a namespace (`keys add`, run against the bucket before the replicas start). */
  keys?: Array<{ key: OllamaKey; namespace: string }>;
}

/** N replicas on a new bucket of the test Ceph, or null (skipped, or failed under CI) where there is no Ceph. */
export async function startReplicas(t: TestContext, opts: ReplicaOptions): Promise<ReplicaSet | null> {
  const endpoint = await s3Endpoint(t);
  return endpoint ? replicasOn(endpoint, opts) : null;
}

/** N replicas on a new bucket of the S3 at `endpoint` (the bench's Ceph). */
export async function replicasOn(endpoint: string, opts: ReplicaOptions): Promise<ReplicaSet> {
  const bucket = await newBucket(endpoint);
  const prefix = opts.prefix ?? 'models';
  const env: NodeJS.ProcessEnv = {
    OLLAMA_REGISTRY_S3_ENDPOINT: endpoint, OLLAMA_REGISTRY_S3_BUCKET: bucket, OLLAMA_REGISTRY_S3_PREFIX: prefix,
    AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
    OLLAMA_REGISTRY_LEASE: '2', ...opts.env,
  };
  for (const k of opts.keys ?? []) {
    const r = await cli(['keys', 'add', k.key.publicKeyLine, '--namespace', k.namespace, '--data', await tempDir('oreg-cli-')], { env, timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`keys add: ${r.stderr}`);
  }
  const list: Replica[] = [];
  const add = async (extraEnv: NodeJS.ProcessEnv = {}): Promise<Replica> => {
    const name = String.fromCharCode(97 + list.length);
    const data = await tempDir(`oreg-replica-${name}-`);
    const scratch = path.join(data, 'scratch');
    const reg = await spawnRegistry(['--data', data, ...(opts.args ?? [])], { ...env, OLLAMA_REGISTRY_SCRATCH: scratch, ...extraEnv });
    const r = { name, reg, url: reg.url, hostPort: reg.hostPort, data, scratch };
    list.push(r);
    return r;
  };
  const set: ReplicaSet = {
    endpoint, bucket, prefix, env, list, add,
    store: () => new S3Driver({ endpoint, bucket, prefix, credentials: S3_CREDENTIALS }),
    kill: async (i) => void await list[i]!.reg.stop('SIGKILL'),
    output: () => list.map((r) => `--- replica ${r.name} (${r.url}):\n${r.reg.output()}`).join('\n'),
    stop: async () => void await Promise.all(list.map((r) => r.reg.stop())),
  };
  try {
    for (let i = 0; i < opts.n; i++) await add();
  } catch (e) {
    await set.stop();
    throw e;
  }
  return set;
}

/** Run `fn` with the replicas (none: the test was skipped); a failure carries their logs; they stop in any case. */
export async function withReplicas(set: ReplicaSet | null, fn: (set: ReplicaSet) => Promise<void>): Promise<void> {
  if (!set) return;
  try {
    await fn(set);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${set.output().slice(-20_000)}`, { cause: e });
  } finally {
    await set.stop();
  }
}
