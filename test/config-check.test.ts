// `config check` and `config docs` through the real command line, hostile config files and values,
// and the README's reference tables kept equal to what the settings table prints.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';
import { limitsTable, settingsTable, upstreamsTable } from '../src/config-docs.js';
import { cli } from './support/cli.js';
import { eventually } from './support/eventually.js';
import { request } from './support/http.js';
import { startTestRegistry, tempDir } from './support/server.js';

const CLEAN = { OLLAMA_REGISTRY_CONFIG: '', OLLAMA_REGISTRY_DATA: '', OLLAMA_REGISTRY_UPSTREAM: '' };
const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');

async function configFile(text: string | Buffer): Promise<string> {
  const file = path.join(await tempDir(), 'config.yaml');
  await writeFile(file, text);
  return file;
}

/** loadConfig's error for a file, which must be a ConfigError (never a crash of another kind). */
function refusal(file: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig({ file, env });
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${String(e)}`);
    return e.message;
  }
  assert.fail('the config was accepted');
}

test('the README configuration tables are the ones the settings table prints', async () => {
  const readme = await readFile(README, 'utf8');
  assert.ok(readme.includes(`${settingsTable()}\n`), 'README "Configuration" table differs from `ollama-registry config docs`: paste its output');
  assert.ok(readme.includes(`${limitsTable()}\n`), 'README "Limits" table differs from `ollama-registry config docs`: paste its output');
  assert.ok(readme.includes(`${upstreamsTable()}\n`), 'README `upstreams[]` table differs from `ollama-registry config docs`: paste its output');
  // Every link of the reference to a README section leads to a heading (GitHub's anchors).
  const anchors = new Set([...readme.matchAll(/^#+ (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')));
  for (const [, anchor] of `${settingsTable()}${limitsTable()}`.matchAll(/\]\(#([^)]+)\)/g)) assert.ok(anchors.has(anchor!), `no README heading for #${anchor}`);
  const docs = await cli(['config', 'docs'], { env: CLEAN });
  assert.equal(docs.code, 0, docs.stderr);
  assert.equal(docs.stdout, `${settingsTable()}\n\n${upstreamsTable()}\n\n${limitsTable()}\n`);
});

test('config check: a good file prints ok and what it and the environment set, passwords hidden', async () => {
  const file = await configFile([
    'listen: 127.0.0.1:9000', 'storage:', '  gcGrace: 10m', '  s3: {bucket: models, endpoint: "http://127.0.0.2:7480"}',
    'upstreams:', '  - {name: team, url: "https://registry.example.com", username: u, password: hunter2}', '',
  ].join('\n'));
  const r = await cli(['config', 'check', file], { env: { ...CLEAN, OLLAMA_REGISTRY_MAX_SIZE: '2TB' } });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.equal(lines[0], 'ok');
  assert.ok(lines.includes(`listen = {"host":"127.0.0.1","port":9000} (${file})`), r.stdout);
  assert.ok(lines.includes(`storage.gcGrace = 600 (${file})`), r.stdout);
  assert.ok(lines.includes(`storage.s3.bucket = "models" (${file})`), r.stdout);
  assert.ok(lines.includes('storage.maxSize = 2000000000000 (environment)'), r.stdout);
  assert.doesNotMatch(r.stdout, /hunter2/);
  assert.match(r.stdout, /"password":"\(hidden\)"/);
  const none = await cli(['config', 'check'], { env: CLEAN });
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, 'ok: nothing set, every setting has its default\n');
});

test('config check: every bad value is listed with its key and source, exit code 2', async () => {
  const file = await configFile('listen: nowhere\nstorage:\n  gcGrace: soon\n  minFree: 150%\nmirror:\n  hosts: [registry.ollama.ai, "bad host"]\nlimits:\n  maxConnections: 0\n');
  const r = await cli(['config', 'check', file], { env: { ...CLEAN, OLLAMA_REGISTRY_LOG_LEVEL: 'loud' } });
  assert.equal(r.code, 2, r.stdout);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.deepEqual(lines.map((l) => /^ollama-registry: config: ([^:]+):/.exec(l)?.[1]), [
    'listen', 'storage.gcGrace', 'storage.minFree', 'mirror.hosts', 'limits.maxConnections', 'log.level', undefined,
  ], r.stderr);
  assert.match(lines[0]!, /listen: expected HOST:PORT or PORT, got "nowhere" \(in .*config\.yaml\)$/);
  assert.match(lines[5]!, /log\.level: expected trace\|debug\|info\|warn\|error\|fatal\|silent, got "loud" \(in environment\)$/);
  assert.equal(lines[6], 'ollama-registry: 6 errors in the configuration');
});

test('config check: unknown keys and environment variables are errors with a suggestion', async () => {
  const file = await configFile('lisen: 8080\nstorage:\n  s3:\n    bukcet: models\n');
  const r = await cli(['config', 'check', file], { env: { ...CLEAN, OLLAMA_REGISTRY_MAX_SZE: '1GB' } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config: lisen: unknown setting \(in .*config\.yaml\); did you mean listen\?\n/);
  assert.match(r.stderr, /config: storage\.s3\.bukcet: unknown setting \(in .*config\.yaml\); did you mean storage\.s3\.bucket\?\n/);
  assert.match(r.stderr, /config: OLLAMA_REGISTRY_MAX_SZE: unknown environment variable; did you mean OLLAMA_REGISTRY_MAX_SIZE\?\n/);
  // The same refusal stops every other command, not only `config check`.
  const ls = await cli(['ls', '--data', path.dirname(file)], { env: { ...CLEAN, OLLAMA_REGISTRY_MAX_SZE: '1GB' } });
  assert.equal(ls.code, 2);
  const many = await cli(['config', 'check', await configFile(Array.from({ length: 5000 }, (_, i) => `key${i}: 1`).join('\n'))], { env: CLEAN });
  assert.equal(many.code, 2);
  assert.equal(many.stderr.trimEnd().split('\n').length, 52, 'at most 50 errors, then how many more and the count');
  assert.match(many.stderr, /… and 4950 more\nollama-registry: 5000 errors in the configuration\n$/);
  const missing = await cli(['config', 'check', path.join(path.dirname(file), 'nope.yaml')], { env: CLEAN });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /config: .*nope\.yaml: cannot read it: ENOENT/);
});

test('S3 settings: off by default, credentials refused in the file, the bucket required, only http(s) endpoints', async () => {
  assert.equal(loadConfig({ env: {} }).storage.s3, undefined);
  const c = loadConfig({ env: { OLLAMA_REGISTRY_S3_BUCKET: 'models', OLLAMA_REGISTRY_S3_PREFIX: 'team/models/', OLLAMA_REGISTRY_S3_REDIRECT: 'true' } });
  assert.deepEqual(c.storage.s3, { bucket: 'models', prefix: 'team/models', forcePathStyle: true, redirect: true, redirectTtlSeconds: 86400 });
  assert.match(refusal(await configFile('storage:\n  s3: {bucket: models, secretAccessKey: x}\n')), /storage\.s3\.secretAccessKey: S3 credentials are never read from the config file: use AWS_ACCESS_KEY_ID/);
  assert.match(refusal(await configFile('storage:\n  s3: {endpoint: "http://127.0.0.2:7480"}\n')), /config: storage\.s3\.bucket: required when any storage\.s3 setting is given/);
  assert.match(refusal(await configFile('storage:\n  s3: {bucket: models, endpoint: "file:///etc/passwd"}\n')), /storage\.s3\.endpoint: expected an http:\/\/ or https:\/\/ URL/);
  assert.match(refusal(await configFile('storage:\n  s3: {bucket: models, prefix: "../up"}\n')), /storage\.s3\.prefix: expected a key prefix/);
  assert.match(refusal(await configFile('storage:\n  s3: {bucket: "Not_A_Bucket"}\n')), /storage\.s3\.bucket: expected an S3 bucket name/);
  assert.match(refusal(await configFile('storage:\n  s3: yes\n')), /config: storage\.s3: expected a mapping of settings such as storage\.s3\.bucket/);
});

test('hostile config files: YAML bombs, cycles, huge or binary files, deep nesting: a clear error, never a crash', async () => {
  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x]'];
  for (const n of ['b', 'c', 'd', 'e', 'f', 'g']) laughs.push(`${n}: &${n} [${Array(9).fill(`*${laughs.at(-1)![0]}`).join(', ')}]`);
  assert.match(refusal(await configFile(`${laughs.join('\n')}\n`)), /not valid YAML: Excessive alias count/);
  // An alias that refers to its own mapping: a cycle, not an endless walk.
  assert.match(refusal(await configFile('storage: &s\n  again: *s\n')), /config: storage(\.again)+: nested too deep/);
  assert.match(refusal(await configFile('upstreams: &u\n  - *u\n')), /config: upstreams\[0\]: expected a mapping with a url/);
  assert.match(refusal(await configFile(`listen: 1\n#${'x'.repeat(2 << 20)}\n`)), /too large for a config file \(over 1024 KiB\)/);
  assert.match(refusal(await configFile(`${'['.repeat(200_000)}\n`)), /not valid YAML: /);
  assert.match(refusal(await configFile(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 0xff, 0xfe, 10, 0x3a, 0x5b]))), /not valid YAML|must be a YAML mapping/);
  assert.match(refusal(await configFile('- listen: 1\n')), /must be a YAML mapping of settings/);
  assert.match(refusal(await configFile('listen: !!js/function "() => 1"\n')), /not valid YAML: .*tag/i);
  assert.match(refusal(await configFile('listen: 1\nlisten: 2\n')), /not valid YAML: Map keys must be unique/);
  const dir = path.join(await tempDir(), 'a-folder.yaml');
  await mkdir(dir);
  assert.match(refusal(dir), /a-folder\.yaml: cannot read it/);
});

test('hostile values: sizes, durations, ports, URLs, numbers out of range, long strings', async () => {
  const bad: Array<[string, RegExp]> = [
    ['listen: 1.2.3.4:70000\n', /listen: expected HOST:PORT or PORT, got "1\.2\.3\.4:70000"/],
    ['storage: {maxSize: 1e400}\n', /storage\.maxSize: expected a size such as 500GB, 1\.5TiB or a number of bytes, got Infinity/],
    ['storage: {maxSize: 99999999999999999TiB}\n', /storage\.maxSize: expected a size/],
    // Waits past 24.8 days overflow node's timers, which then fire after 1 ms: gc in a busy loop.
    ['storage: {gcInterval: 99999999999d}\n', /storage\.gcInterval: expected at most 24d, got "99999999999d"/],
    ['storage: {gcInterval: 30d}\n', /storage\.gcInterval: expected at most 24d/],
    ['limits: {headersTimeout: 60d}\n', /limits\.headersTimeout: expected at most 24d/],
    ['upstreams: [{url: "https://a.example", timeout: 90d}]\n', /upstreams\[0\]\.timeout: expected at most 24d/],
    ['storage: {s3: {bucket: models, redirectTtl: 8d}}\n', /storage\.s3\.redirectTtl: expected at most 7d/],
    ['limits: {passwordWorkers: 100000}\n', /limits\.passwordWorkers: expected at most 64, got 100000/],
    ['auth: {tokenTtlSeconds: 1e300}\n', /auth\.tokenTtlSeconds: expected at most/],
    ['storage: {gcInterval: -5}\n', /storage\.gcInterval: expected a duration/],
    ['uploads: {maxSessions: 1.5}\n', /uploads\.maxSessions: expected a whole number ≥ 0/],
    ['uploads: {maxSessions: true}\n', /uploads\.maxSessions: expected a whole number ≥ 0/],
    ['auth: {tokenTtlSeconds: .nan}\n', /auth\.tokenTtlSeconds: expected a number > 0/],
    ['limits: {passwordWorkers: 99999999999999999999}\n', /limits\.passwordWorkers: expected a whole number >= 1/],
    ['upstream: "ftp://registry.example.com"\n', /upstream: expected an http:\/\/ or https:\/\/ URL/],
    ['upstream: "https://user:pw@registry.example.com"\n', /upstream: the URL must not carry credentials/],
    ['mirror: {tunnel: ["ollama.com:0"]}\n', /mirror\.tunnel: expected host:port/],
    ['pushHost: "../../etc"\n', /pushHost: invalid host folder name/],
    [`data: "${'d'.repeat(5000)}"\n`, /data: expected at most 4096 characters, got 5000/],
    [`hosts: [${Array(300).fill('a.b').join(', ')}]\n`, /hosts: expected at most 256 items, got 300/],
    ['storage: {lease: 0.5}\n', /storage\.lease: expected a duration of at least 1s/],
    ['storage: {advertiseUrl: "ftp://10.0.0.5"}\n', /storage\.advertiseUrl: expected an http\(s\) URL without credentials/],
    ['storage: {scratch: "/tmp/a\\0b"}\n', /storage\.scratch: expected a path without control characters, got "\/tmp\/a\\u0000b"/],
    ['allowDelete: maybe\n', /allowDelete: expected true or false, got "maybe"/],
    ['log: {format: [json]}\n', /log\.format: expected json\|text\|auto, got \["json"\]/],
  ];
  for (const [yaml, msg] of bad) assert.match(refusal(await configFile(yaml)), msg, yaml);
  // A value is quoted in an error, but never at full length.
  const long = refusal(await configFile(`listen: "${'x'.repeat(3000)}"\n`));
  assert.ok(long.length < 200, long);
});

test('a policy reload reads the config file with the same caps: a huge or cyclic edit is refused, the rules stay', async (t) => {
  const deny = 'policy:\n  - name: no-private\n    deny: pull\n    names: "private/*"\n';
  const file = await configFile(deny);
  const cfg = loadConfig({ file, env: {} });
  const reg = await startTestRegistry({ config: { policy: cfg.policy, configFile: cfg.configFile } });
  t.after(reg.close);
  t.after(() => reg.app.policy.close());
  const configCheck = async () => (await request(reg.url, '/readyz')).json().checks.config as string;
  await writeFile(file, `${deny}#${'x'.repeat(2 << 20)}\n`);
  await eventually(async () => assert.match(await configCheck(), /the last edit was not applied: .*config\.yaml: too large for a config file/));
  await writeFile(file, 'policy: &p\n  - deny: pull\n    names: *p\n');
  await eventually(async () => assert.match(await configCheck(), /the last edit was not applied: .*policy\[0\]\.names/));
  // A file that is a list is no config: it must not read as "no rules" and let everything through.
  await writeFile(file, '- policy: []\n');
  await eventually(async () => assert.match(await configCheck(), /the last edit was not applied: .*must be a YAML mapping of settings/));
  assert.equal((await request(reg.url, '/v2/private/secret/manifests/latest')).status, 403, 'the previous rules stay in force');
});
