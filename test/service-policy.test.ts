// Policy rules: each kind refusing and allowing, errors naming the rule, reload without restart.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';
import { RegistryError } from '../src/errors.js';
import type { Handler } from '../src/http/context.js';
import { routeTable } from '../src/http/table.js';
import { parsePolicy, Policy } from '../src/auth/rules.js';
import { request } from './support/http.js';
import { addUser } from './support/registry-auth.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, tempDir } from './support/server.js';
import { eventually } from './support/eventually.js';

async function modelsIn(names: Array<[string, string]>): Promise<string> {
  const data = await tempDir();
  for (const [namespace, model] of names) await makeModel(data, { namespace, model });
  return data;
}

test('pull: a deny rule refuses manifests, blobs and tags of matching names with 403 DENIED naming the rule, and hides them from the catalog', async (t) => {
  const data = await modelsIn([['private', 'secret'], ['library', 'open']]);
  const reg = await startTestRegistry({ data, config: { policy: parsePolicy([{ name: 'no-private', deny: 'pull', names: 'private/*' }]) } });
  t.after(reg.close);
  const r = await request(reg.url, '/v2/private/secret/manifests/latest');
  assert.equal(r.status, 403);
  assert.deepEqual(r.json().errors[0], { code: 'DENIED', message: 'pull of private/secret is refused by policy rule "no-private" (deny pull private/*)' });
  assert.doesNotMatch(r.text(), /unauthorized|access denied/i);
  assert.equal((await request(reg.url, '/v2/PRIVATE/Secret/manifests/latest')).status, 403, 'names match case-insensitively, as ollama does');
  assert.equal((await request(reg.url, `/v2/private/secret/blobs/sha256:${'0'.repeat(64)}`)).status, 403);
  assert.equal((await request(reg.url, '/v2/private/secret/tags/list')).status, 403);
  assert.equal((await request(reg.url, '/v2/library/open/manifests/latest')).status, 200);
  assert.equal((await reg.app.metrics.policyRefusals.get()).values.find((v) => v.labels.action === 'pull')!.value, 4);
  assert.deepEqual((await request(reg.url, '/v2/_catalog')).json().repositories, ['library/open'], 'the catalog hides what may not be pulled');
});

test('pull: the first matching rule decides; an allow list ends with a catch-all deny', async (t) => {
  const data = await modelsIn([['team', 'public-chat'], ['team', 'internal'], ['library', 'open'], ['other', 'thing']]);
  const reg = await startTestRegistry({
    data,
    config: {
      policy: parsePolicy([
        { allow: 'pull', names: ['team/public-*', 'library/*'] },
        { deny: 'all', names: 'team/*' },
        { deny: ['pull'], names: '*' },
      ]),
    },
  });
  t.after(reg.close);
  const status = async (n: string) => (await request(reg.url, `/v2/${n}/manifests/latest`)).status;
  assert.equal(await status('team/public-chat'), 200);
  assert.equal(await status('library/open'), 200);
  const internal = await request(reg.url, '/v2/team/internal/manifests/latest');
  assert.equal(internal.status, 403);
  assert.match(internal.json().errors[0].message, /policy rule #2 \(deny pull, pull-through, push team\/\*\)/);
  const other = await request(reg.url, '/v2/other/thing/manifests/latest');
  assert.equal(other.status, 403);
  assert.match(other.json().errors[0].message, /policy rule #3/);
});

test('push: writes to a repository are checked as pushes', async (t) => {
  // A stand-in manifest PUT handler: the policy check happens before any push handler runs.
  const routes = routeTable();
  const put: Handler = async ({ res }) => { res.writeHead(201); res.end(); };
  routes.find((r) => r.name === 'manifest')!.handlers.PUT = put;
  routes.find((r) => r.name === 'uploads')!.handlers.GET = put;
  const reg = await startTestRegistry({ routes, config: { policy: parsePolicy([{ name: 'read-only-library', deny: 'push', names: 'library/*' }]) } });
  t.after(reg.close);
  // Writes need credentials first (a user who may push everywhere); policy decides after that.
  await addUser(reg, 'writer', 'pw', '*');
  const headers = { Authorization: `Basic ${Buffer.from('writer:pw').toString('base64')}` };
  const denied = await request(reg.url, '/v2/library/x/manifests/latest', { method: 'PUT', body: '{}', headers });
  assert.equal(denied.status, 403);
  assert.match(denied.json().errors[0].message, /^push of library\/x is refused by policy rule "read-only-library"/);
  assert.equal((await request(reg.url, '/v2/team/x/manifests/latest', { method: 'PUT', body: '{}', headers })).status, 201);
  // Every request about an upload session is part of a push, GET included.
  assert.match((await request(reg.url, '/v2/library/x/blobs/uploads/abc', { headers })).json().errors[0].message, /^push of library\/x/);
  assert.equal((await request(reg.url, '/v2/team/x/blobs/uploads/abc', { headers })).status, 201);
});

test('check() for each action: pull, pull-through, push refuse and allow by rule', () => {
  const p = new Policy(parsePolicy([
    { name: 'mirror-only-library', deny: 'pull-through', names: '*' },
    { allow: 'pull-through', names: 'library/*' }, // never reached: rule 1 matches first
    { deny: 'push', names: ['library/*', 'hf.co-*/*'] },
    { deny: 'pull', names: 'secret/**' },
  ]));
  const refused = (fn: () => void, rule: RegExp) => assert.throws(fn, (e: unknown) => e instanceof RegistryError && e.code === 'DENIED' && e.status === 403 && rule.test(e.message));
  refused(() => p.check('pull-through', 'library', 'gemma2'), /^pull-through of library\/gemma2 is refused by policy rule "mirror-only-library"/);
  refused(() => p.check('push', 'library', 'gemma2'), /rule #3/);
  refused(() => p.check('pull', 'secret', 'x'), /rule #4/);
  p.check('pull', 'library', 'gemma2');
  p.check('push', 'team', 'gemma2');
  assert.deepEqual(p.decide('push', 'team', 'x'), { allowed: true });
  assert.equal(p.decide('push', 'Library', 'X').allowed, false);

  const allowFirst = new Policy(parsePolicy([{ allow: 'pull-through', names: 'library/*' }, { deny: 'pull-through', names: '*' }]));
  allowFirst.check('pull-through', 'library', 'gemma2');
  refused(() => allowFirst.check('pull-through', 'bartowski', 'x'), /rule #2/);
  new Policy([]).check('push', 'any', 'thing');
});

test('bad rules are refused at start-up with the key that is wrong', async () => {
  const dir = await tempDir();
  const cases: Array<[string, RegExp]> = [
    ['policy:\n  - deny: fly\n    names: "a/*"\n', /config: policy\[0\]\.deny: unknown action "fly"/],
    ['policy:\n  - deny: pull\n', /config: policy\[0\]\.names: expected/],
    ['policy:\n  - deny: pull\n    names: gemma\n', /config: policy\[0\]\.names: "gemma" is not a namespace\/model glob/],
    ['policy:\n  - {deny: pull, allow: push, names: "a/b"}\n', /config: policy\[0\]: give exactly one of allow: or deny:/],
    ['policy:\n  - {deny: pull, names: "a/b", tags: x}\n', /config: policy\[0\]\.tags: unknown rule field/],
    ['policy: yes\n', /config: policy: expected a list of rules/],
  ];
  for (const [i, [yaml, msg]] of cases.entries()) {
    const file = path.join(dir, `c${i}.yaml`);
    await writeFile(file, yaml);
    assert.throws(() => loadConfig({ file, env: {} }), (e: unknown) => e instanceof ConfigError && msg.test(e.message), yaml);
  }
});

test('rules are reloaded from the config file without a restart; a broken edit keeps the rules in force', async (t) => {
  const data = await modelsIn([['private', 'secret']]);
  const file = path.join(await tempDir(), 'registry.yaml');
  const deny = 'policy:\n  - name: no-private\n    deny: pull\n    names: "private/*"\n';
  await writeFile(file, deny);
  const cfg = loadConfig({ file, env: {} });
  const reg = await startTestRegistry({ data, config: { policy: cfg.policy, configFile: cfg.configFile } });
  t.after(reg.close);
  t.after(() => reg.app.policy.close());
  const status = async () => (await request(reg.url, '/v2/private/secret/manifests/latest')).status;
  assert.equal(await status(), 403);

  await writeFile(file, 'policy: []\n');
  await eventually(async () => assert.equal(await status(), 200));
  await writeFile(file, deny);
  await eventually(async () => assert.equal(await status(), 403));

  await writeFile(file, 'policy:\n  - deny: fly\n    names: "x/*"\n');
  await eventually(async () => assert.match((await request(reg.url, '/readyz')).json().checks.config, /the last edit was not applied: .*policy\[0\]\.deny: unknown action "fly"/));
  assert.equal(await status(), 403, 'the previous rules stay in force');
  assert.equal((await request(reg.url, '/readyz')).status, 200, 'still ready');
});
