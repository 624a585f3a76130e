// The S3 driver against a store that is not trusted either (the real Ceph): an object too large
// to be a record is refused by readAll/readVersioned instead of being buffered whole; and the
// credentials come from the AWS SDK's usual chain.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { RegistryError } from '../src/errors.js';
import { S3Driver } from '../src/storage/s3.js';
import { newBucket, S3_CREDENTIALS, s3Driver, s3Endpoint } from './support/s3.js';
import { tempDir } from './support/server.js';

test('s3 driver: readAll and readVersioned refuse an object larger than 64 MiB (a planted record), read() still streams it', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const d = await s3Driver(endpoint);
  t.after(() => d.destroy());
  const big = Buffer.alloc((64 << 20) + 1, 0x61);
  await d.write('.ollama-registry/users.json', big);
  await assert.rejects(d.readAll('.ollama-registry/users.json'), /larger than 64 MiB/);
  await assert.rejects(d.readVersioned('.ollama-registry/users.json'), /larger than 64 MiB/);
  let n = 0;
  for await (const c of await d.read('.ollama-registry/users.json')) n += (c as Buffer).length;
  assert.equal(n, big.length);
  await d.delete('.ollama-registry/users.json');
});

test('s3 driver: credentials come from the SDK chain (environment, then a shared credentials file), never the options', async (t) => {
  const endpoint = await s3Endpoint(t);
  if (!endpoint) return;
  const bucket = await newBucket(endpoint);
  const saved = { ...process.env };
  t.after(() => {
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CONFIG_FILE', 'AWS_PROFILE']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  process.env.AWS_ACCESS_KEY_ID = S3_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3_CREDENTIALS.secretAccessKey;
  const fromEnv = new S3Driver({ endpoint, bucket });
  await fromEnv.write('blobs/sha256-env', Buffer.from('env'));
  fromEnv.destroy();

  delete process.env.AWS_ACCESS_KEY_ID;
  delete process.env.AWS_SECRET_ACCESS_KEY;
  const dir = await tempDir('oreg-aws-');
  const profile = (name: string, secret: string): string => `[${name}]\naws_access_key_id = ${S3_CREDENTIALS.accessKeyId}\naws_secret_access_key = ${secret}\n`;
  await writeFile(path.join(dir, 'credentials'), profile('registry', S3_CREDENTIALS.secretAccessKey) + profile('wrong', 'not-the-secret'), { mode: 0o600 });
  await writeFile(path.join(dir, 'config'), '');
  process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(dir, 'credentials');
  process.env.AWS_CONFIG_FILE = path.join(dir, 'config');
  process.env.AWS_PROFILE = 'registry';
  const fromFile = new S3Driver({ endpoint, bucket });
  t.after(() => fromFile.destroy());
  assert.equal((await fromFile.readAll('blobs/sha256-env')).toString(), 'env');

  // A wrong secret is the store refusing the registry: STORE_UNAVAILABLE, not a 500.
  const outage = (why: RegExp) => (e: unknown) => e instanceof RegistryError && e.code === 'STORE_UNAVAILABLE' && why.test(e.message);
  process.env.AWS_PROFILE = 'wrong';
  const wrong = new S3Driver({ endpoint, bucket });
  t.after(() => wrong.destroy());
  await assert.rejects(wrong.readAll('blobs/sha256-env'), outage(/SignatureDoesNotMatch|signature/i));
  // No credentials anywhere: the same clear 503, naming the cause.
  process.env.AWS_PROFILE = 'absent';
  const none = new S3Driver({ endpoint, bucket });
  t.after(() => none.destroy());
  await assert.rejects(none.readAll('blobs/sha256-env'), outage(/credentials/i));
});
