// The request pipeline without a socket: requests go through handle() (an in-memory connection,
// Node's HTTP parser, the one route table and gate), with no port opened.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { inMemory, textOf, type Response } from '../src/http/handle.js';
import { parsePolicy } from '../src/auth/rules.js';
import { defaults } from '../src/config.js';
import { mirrorDefaults } from '../src/mirror/config.js';
import { makeModel } from './support/models.js';
import { openTestApp, tempDir } from './support/server.js';
import { upstreamConfig } from './support/cache.js';

async function json(r: Response): Promise<{ errors?: Array<{ code: string; message: string }> } & Record<string, unknown>> {
  return JSON.parse(await textOf(r));
}

test('ping answers 200 with the registry API headers', async () => {
  const handle = inMemory(await openTestApp());
  const r = await handle({ url: '/v2/' });
  assert.equal(r.status, 200);
  assert.deepEqual(await json(r), {});
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
});

test('a manifest GET returns the stored bytes; a blob GET with a Range its bytes', async () => {
  const app = await openTestApp();
  const m = await makeModel(app.config.data, { model: 'gemma2', tag: '2b', layers: [{ mediaType: 'application/vnd.ollama.image.model', content: 'weights of the model' }] });
  const handle = inMemory(app);
  const r = await handle({ url: '/v2/library/gemma2/manifests/2b' });
  assert.equal(r.status, 200);
  assert.equal(await textOf(r), m.manifestBytes.toString());
  assert.equal(r.headers['docker-content-digest'], m.manifestDigest);
  const layer = m.blobs[0]!;
  const part = await handle({ url: `/v2/library/gemma2/blobs/${layer.digest}`, headers: { Range: 'bytes=0-6' } });
  assert.equal(part.status, 206);
  assert.equal(await textOf(part), 'weights');
  assert.equal(part.headers['content-range'], `bytes 0-6/${layer.size}`);
});

test('access refusals come from the gate: 401 with a challenge on this Host, 403 for a policy rule', async () => {
  const app = await openTestApp({ config: { auth: { ...defaults().auth, anonymousRead: false } } });
  await makeModel(app.config.data, { model: 'gemma2', tag: '2b' });
  const handle = inMemory(app);
  const r = await handle({ url: '/v2/library/gemma2/manifests/2b', headers: { Host: 'models.lan:5000' } });
  assert.equal(r.status, 401);
  assert.equal((await json(r)).errors![0]!.code, 'UNAUTHORIZED');
  assert.match(String(r.headers['www-authenticate']), /^Bearer realm="http:\/\/models\.lan:5000\/v2\/token",service="models\.lan:5000",scope="repository:library\/gemma2:pull"$/);
  // The web page's model API has the same need as a pull of that model.
  const ui = await handle({ url: '/api/ui/model?host=registry.ollama.ai&namespace=library&model=gemma2' });
  assert.equal(ui.status, 401);

  const ruled = await openTestApp({ config: { policy: parsePolicy([{ name: 'no-secrets', deny: 'pull', names: 'secret/*' }]) } });
  await makeModel(ruled.config.data, { namespace: 'secret', model: 'x', tag: '1' });
  const denied = await inMemory(ruled)({ url: '/v2/secret/x/manifests/1' });
  assert.equal(denied.status, 403);
  assert.match((await json(denied)).errors![0]!.message, /^pull of secret\/x is refused by policy rule "no-secrets"/);
});

test('an unknown route gets the OCI error under /v2/ and NOT_FOUND elsewhere; a wrong method 405 with Allow', async () => {
  const handle = inMemory(await openTestApp());
  const v2 = await handle({ url: '/v2/library/gemma2/nothing-here' });
  assert.equal(v2.status, 404);
  assert.equal((await json(v2)).errors![0]!.code, 'NAME_UNKNOWN');
  const other = await handle({ url: '/no/such/page' });
  assert.equal(other.status, 404);
  assert.deepEqual((await json(other)).errors, [{ code: 'NOT_FOUND', message: 'no such endpoint: GET /no/such/page' }]);
  const post = await handle({ method: 'POST', url: '/healthz', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  assert.equal((await json(post)).errors![0]!.code, 'UNSUPPORTED');
  // Pages outside /v2 answer only the methods they declare, the mirror's too.
  assert.equal((await handle({ method: 'DELETE', url: '/mirror/ca.pem' })).status, 405);
});

test('a need named in the body (/api/pull) is checked from the headers first: refused while the body never comes', async () => {
  const handle = inMemory(await openTestApp());
  const never = new PassThrough(); // a body stream that sends nothing
  const r = await handle({ method: 'POST', url: '/api/pull', headers: { 'Content-Type': 'application/json', 'Content-Length': '1000' }, body: never });
  assert.equal(r.status, 401);
  assert.equal(r.headers.connection, 'close');
  assert.match((await json(r)).errors![0]!.message, /^credentials required to push/);
  never.destroy();
});

test('the site table: a mirror site answers from its own host folder; any other Host as the registry itself', async () => {
  // The upstream is never reached: the cached copy is fresh for a day.
  const app = await openTestApp({
    config: { ...upstreamConfig('http://127.0.0.2:9', { host: 'registry.ollama.ai', freshness: '1d' }), mirror: mirrorDefaults(await tempDir()) },
  });
  // The same name pushed here (the push host folder comes first in the lookup order) and cached from registry.ollama.ai.
  const pushed = await makeModel(app.config.data, { host: app.config.pushHost, model: 'tiny', tag: '1', layers: [{ mediaType: 'application/vnd.ollama.image.model', content: 'pushed here' }] });
  const mirrored = await makeModel(app.config.data, { host: 'registry.ollama.ai', model: 'tiny', tag: '1', layers: [{ mediaType: 'application/vnd.ollama.image.model', content: 'from ollama' }] });
  const handle = inMemory(app);
  const own = await handle({ url: '/v2/library/tiny/manifests/1' });
  assert.equal(own.headers['docker-content-digest'], pushed.manifestDigest);
  for (const host of ['registry.ollama.ai', 'Registry.Ollama.AI:443']) {
    const site = await handle({ url: '/v2/library/tiny/manifests/1', headers: { Host: host } });
    assert.equal(site.status, 200);
    assert.equal(site.headers['docker-content-digest'], mirrored.manifestDigest, host);
    await textOf(site);
  }
});
