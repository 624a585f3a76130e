// The page's write actions (prefetch with live progress, delete a tag, sign-in) in a real
// browser. The endpoints behind them come with the cache and push/auth features; until those
// land, small stand-ins here speak the contracts the page documents (README, "The web
// catalog"): ollama's /api/pull NDJSON progress, a Basic-auth token endpoint, a DELETE that
// needs the token. What is tested is the page: its requests, progress, refusals and results.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../src/app.js';
import type { PlainHandler } from '../src/http/server.js';
import { parseModelName } from '../src/names.js';
import { uiRoutes } from '../src/ui/routes.js';
import { artifact, launchBrowser } from './support/browser.js';
import { makeModel } from './support/models.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

let reg: TestRegistry;
let browser: Browser;
let page: Page;
let gemma2b: string;
let openGate: () => void = () => {};
const requests: string[] = [];

function authorized(req: IncomingMessage): boolean {
  return req.headers.authorization === 'Bearer good-token';
}

function refuse(res: ServerResponse, message: string): void {
  res.writeHead(401, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message }] }));
}

const token: PlainHandler = async (_app, req, res) => {
  requests.push(`token ${req.headers.authorization}`);
  if (req.headers.authorization !== `Basic ${Buffer.from('alice:sécret').toString('base64')}`) return refuse(res, 'wrong user or password');
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ token: 'good-token' }));
};

const del: PlainHandler = async (app: App, req, res, url) => {
  requests.push(`${req.method} ${url.search} ${req.headers.authorization ?? '-'}`);
  if (!authorized(req)) return refuse(res, 'sign in to delete tags');
  const q = Object.fromEntries(url.searchParams) as Record<string, string>;
  await app.manifests.delete({ host: q.host!, namespace: q.namespace!, model: q.model!, tag: q.tag! });
  res.writeHead(202).end();
};

/** Streams progress in ollama's /api/pull shape; halfway it waits for the test to look. */
const pull: PlainHandler = async (app: App, req, res) => {
  let body = '';
  for await (const c of req) body += c;
  const { name } = JSON.parse(body) as { name: string };
  requests.push(`pull ${name} ${req.headers.authorization ?? '-'}`);
  if (!authorized(req)) return refuse(res, 'sign in to prefetch');
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  const send = (o: object) => res.write(`${JSON.stringify(o)}\n`);
  if (name === 'nope:latest') {
    send({ status: 'pulling manifest' });
    send({ error: 'pull model manifest: file does not exist' });
    return void res.end();
  }
  const blobs = [{ digest: `sha256:${'a'.repeat(64)}`, total: 3_000_000 }, { digest: `sha256:${'b'.repeat(64)}`, total: 1_000_000 }];
  send({ status: 'pulling manifest' });
  for (let step = 1; step <= 10; step++) {
    for (const b of blobs) send({ status: `pulling ${b.digest.slice(7, 19)}`, digest: b.digest, total: b.total, completed: Math.round((b.total * step) / 10) });
    if (step === 5) await new Promise<void>((r) => { openGate = r; });
    else await new Promise((r) => setTimeout(r, 30));
  }
  send({ status: 'verifying sha256 digest' });
  send({ status: 'writing manifest' });
  const n = parseModelName(name);
  await makeModel(app.config.data, { host: 'registry.ollama.ai', namespace: n.namespace, model: n.model, tag: n.tag });
  send({ status: 'success' });
  res.end();
};

before(async () => {
  const plain = uiRoutes({
    features: () => ({
      prefetch: { url: '/test/pull' },
      delete: { url: '/test/tags?host={host}&namespace={namespace}&model={model}&tag={tag}' },
      signIn: { tokenUrl: '/test/token' },
    }),
  });
  plain.set('/test/pull', pull).set('/test/tags', del).set('/test/token', token);
  reg = await startTestRegistry({ plain });
  gemma2b = (await makeModel(reg.data, { model: 'gemma2', tag: '2b' })).manifestPath;
  await makeModel(reg.data, { model: 'gemma2', tag: 'latest' });
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (e) => assert.fail(`error in the page: ${e.message}`));
});
after(async () => {
  await browser?.close();
  await reg?.close();
});

async function signIn(password: string): Promise<void> {
  await page.locator('dialog.signin').waitFor();
  await page.fill('#user', 'alice');
  await page.fill('#pass', password);
  await page.locator('dialog.signin button[type=submit]').click();
}

test('delete is refused signed out, and works signed in', async () => {
  await page.goto(`${reg.url}/#/m/registry.ollama.ai/library/gemma2/2b`);
  await page.locator('#delete-tag').waitFor();
  page.once('dialog', (d) => void d.accept());
  await page.click('#delete-tag');
  // Refused: the page offers to sign in; cancelling leaves the tag and says why.
  await page.locator('dialog.signin').waitFor();
  assert.match(String(await page.locator('dialog.signin').textContent()), /sign in to delete tags/);
  await page.locator('dialog.signin button', { hasText: 'Cancel' }).click();
  await page.locator('.actions .error', { hasText: 'Not deleted: sign in to delete tags' }).waitFor();
  await access(gemma2b);
  // A wrong password is refused in the dialog; the right one signs in.
  await page.click('#sign-in');
  await signIn('wrong');
  await page.locator('dialog.signin .error', { hasText: 'wrong user or password' }).waitFor();
  await signIn('sécret');
  await page.locator('#account', { hasText: 'Signed in as alice' }).waitFor();
  page.once('dialog', (d) => void d.accept());
  await page.click('#delete-tag');
  await page.locator('h1').filter({ hasText: 'gemma2:latest' }).waitFor();
  assert.deepEqual(await page.locator('.tags .chip').allTextContents(), ['latest 1.25 kB']);
  await assert.rejects(access(gemma2b), /ENOENT/);
  assert.ok(requests.includes('DELETE ?host=registry.ollama.ai&namespace=library&model=gemma2&tag=2b Bearer good-token'), requests.join('\n'));
  // Signing out drops the token.
  await page.click('#sign-out');
  assert.equal(await page.locator('#sign-in').count(), 1);
});

test('a prefetch shows live progress per blob and in total, then the model is listed', async () => {
  await page.goto(`${reg.url}/`);
  await page.locator('#catalog').waitFor();
  await page.click('#sign-in');
  await signIn('sécret');
  await page.fill('#prefetch-name', 'qwen2.5:0.5b');
  await page.keyboard.press('Enter');
  // Halfway: both blobs have bars, the total is at 50%, with a rate.
  await page.locator('.pf-blobs li').nth(1).waitFor();
  await page.waitForFunction(() => (document.getElementById('pf-total') as HTMLProgressElement | null)?.value === 2_000_000);
  assert.equal(await page.locator('#pf-total').getAttribute('max'), '4000000');
  assert.match(String(await page.locator('.pf-total').textContent()), /^2\.00 MB of 4\.00 MB \(50%\)/);
  assert.deepEqual(await page.locator('.pf-blobs li span').allTextContents(), ['1.50 MB / 3.00 MB', '500 kB / 1.00 MB']);
  await page.screenshot({ path: await artifact('prefetch-progress.png') });
  openGate();
  await page.locator('.pf-status', { hasText: 'Done: qwen2.5:0.5b is in the registry.' }).waitFor();
  assert.match(String(await page.locator('.pf-total').textContent()), /^4\.00 MB of 4\.00 MB \(100%\)/);
  await page.locator('#catalog .row', { hasText: 'library/qwen2.5' }).waitFor();
  assert.ok(requests.includes('pull qwen2.5:0.5b Bearer good-token'));
  // An error line from the stream is shown as the reason.
  await page.fill('#prefetch-name', 'nope:latest');
  await page.keyboard.press('Enter');
  await page.locator('.pf-status.error', { hasText: 'Prefetch failed: pull model manifest: file does not exist' }).waitFor();
});
