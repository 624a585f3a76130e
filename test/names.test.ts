import assert from 'node:assert/strict';
import { test } from 'node:test';
import { digestHex, isReservedTag, parseModelName } from '../src/names.js';
import { parseV2Path } from '../src/http/routes.js';

test('parseModelName follows ollama ParseName (protocol §1.4 examples)', () => {
  assert.deepEqual(parseModelName('gemma2'), { host: 'registry.ollama.ai', namespace: 'library', model: 'gemma2', tag: 'latest' });
  assert.deepEqual(parseModelName('myns/gemma2:2b'), { host: 'registry.ollama.ai', namespace: 'myns', model: 'gemma2', tag: '2b' });
  assert.deepEqual(parseModelName('192.168.1.3:8080/library/gemma2:2b'), { host: '192.168.1.3:8080', namespace: 'library', model: 'gemma2', tag: '2b' });
  assert.deepEqual(parseModelName('http://10.0.0.5:8080/library/gemma2:2b'), { host: '10.0.0.5:8080', namespace: 'library', model: 'gemma2', tag: '2b' });
  assert.deepEqual(parseModelName('hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M'),
    { host: 'hf.co', namespace: 'bartowski', model: 'Llama-3.2-1B-Instruct-GGUF', tag: 'Q4_K_M' });
  for (const bad of ['host:8080/gemma2:2b', 'ns.with.dot/model', 'model@sha256:abcd', 'a/b/c/d', 'model:', '/model', 'x'.repeat(81), '../x', 'm:.hidden']) {
    assert.throws(() => parseModelName(bad), /invalid model name/, bad);
  }
});

test('digests are sha256 with 64 lowercase hex characters only', () => {
  const hex = 'a'.repeat(64);
  assert.equal(digestHex(`sha256:${hex}`), hex);
  for (const bad of [`sha256:${'A'.repeat(64)}`, `sha512:${hex}`, `sha256:${hex}0`, `sha256-${hex}`, 'sha256:', `sha256:${hex}\n`]) {
    assert.throws(() => digestHex(bad), /invalid digest/, bad);
  }
});

test('reserved tags (ollama ParseRef suffixes) are recognised', () => {
  for (const t of ['local', 'CLOUD', 'x-cloud']) assert.ok(isReservedTag(t), t);
  for (const t of ['latest', 'cloudy', '2b']) assert.ok(!isReservedTag(t), t);
});

test('registry paths parse into validated routes', () => {
  const d = `sha256:${'0'.repeat(64)}`;
  assert.deepEqual(parseV2Path('/v2/'), { kind: 'ping' });
  assert.deepEqual(parseV2Path('/v2/_catalog'), { kind: 'catalog' });
  assert.deepEqual(parseV2Path('/v2/library/gemma2/manifests/2b'), { kind: 'manifest', namespace: 'library', model: 'gemma2', reference: '2b' });
  assert.deepEqual(parseV2Path(`/v2/library/gemma2/manifests/${d}`), { kind: 'manifest', namespace: 'library', model: 'gemma2', reference: d });
  assert.deepEqual(parseV2Path(`/v2/library/blobs/blobs/${d}`), { kind: 'blob', namespace: 'library', model: 'blobs', digest: d });
  assert.deepEqual(parseV2Path('/v2/team/m/blobs/uploads/'), { kind: 'uploads', namespace: 'team', model: 'm', id: undefined });
  assert.deepEqual(parseV2Path('/v2/team/m/blobs/uploads'), { kind: 'uploads', namespace: 'team', model: 'm' });
  assert.deepEqual(parseV2Path('/v2/team/m/tags/list'), { kind: 'tags', namespace: 'team', model: 'm' });
  assert.equal(parseV2Path('/index.html'), null);
  assert.throws(() => parseV2Path('/v2/a/b/c/manifests/latest'), /namespace>\/<model>/);
  assert.throws(() => parseV2Path('/v2/%2e%2e/m/manifests/latest'), /invalid namespace/);
  assert.throws(() => parseV2Path('/v2/lib/m/manifests/%zz'), /percent-encoding/);
});
