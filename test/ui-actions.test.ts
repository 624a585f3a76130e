// The page's write actions in a real browser against the real endpoints: sign-in through
// /v2/token with a registered user, prefetch through POST /api/pull from an upstream (a second
// instance of this server), delete through DELETE /v2/<name>/manifests/<tag>. The upstream sits
// behind the fault front throttled to a WAN-like rate: on loopback a few MB would arrive in
// milliseconds, and the test wants to see the progress mid-way.
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { defaults } from '../src/config.js';
import { artifact, launchBrowser } from './support/browser.js';
import { upstreamConfig } from './support/cache.js';
import { startFaultUpstream, type FaultUpstream } from './support/fault-upstream.js';
import { request } from './support/http.js';
import { makeModel, sha256File, type MadeModel } from './support/models.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, type TestRegistry } from './support/server.js';

const MiB = 1 << 20;
const RATE = 2 * MiB;
let upstream: TestRegistry;
let front: FaultUpstream;
let reg: TestRegistry;
let browser: Browser;
let page: Page;
let tiny: MadeModel;
let gemma2b: MadeModel;

before(async () => {
  upstream = await startTestRegistry();
  tiny = await makeModel(upstream.data, {
    model: 'tinyllama', tag: '1b', layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: 4 * MiB },
      { mediaType: 'application/vnd.ollama.image.projector', size: 2 * MiB },
      { mediaType: 'application/vnd.ollama.image.template', content: '<|user|>{{ .Prompt }}' },
      { mediaType: 'application/vnd.ollama.image.params', content: '{"stop":["</s>"]}' },
      { mediaType: 'application/vnd.ollama.image.license', content: 'Apache-2.0' },
    ],
  });
  front = await startFaultUpstream(upstream.url, { rate: RATE });
  reg = await startTestRegistry({ config: { ...upstreamConfig(front.url), allowDelete: true } });
  await addUser(reg, 'alice', 'sécret', '*', ['pull', 'push', 'delete']);
  await addUser(reg, 'carol', 'carol-pw', 'library', ['pull', 'push']);
  gemma2b = await makeModel(reg.data, { model: 'gemma2', tag: '2b' });
  await makeModel(reg.data, { model: 'gemma2', tag: 'latest' });
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
});
after(async () => {
  await browser?.close();
  await reg?.app.cache?.close();
  await reg?.close();
  await front?.close();
  await upstream?.close();
});

const dialog = () => page.locator('dialog.signin');
const blobPath = (data: string, digest: string) => path.join(data, 'blobs', `sha256-${digest.slice(7)}`);

/** Navigate inside the page (a reload would sign out: the token lives in memory only). */
async function goHash(hash: string): Promise<void> {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

async function fillSignIn(user: string, password: string): Promise<void> {
  await dialog().waitFor();
  await page.fill('#user', user);
  await page.fill('#pass', password);
  await dialog().locator('button[type=submit]').click();
}

test('signed out, prefetch and delete are refused with a clear message, by the page and by the endpoints', async () => {
  await page.goto(`${reg.url}/`);
  await page.locator('#catalog').waitFor();
  await page.locator('#pf-hint', { hasText: 'Sign in with an account that may push to start a prefetch.' }).waitFor();
  await page.fill('#prefetch-name', 'tinyllama:1b');
  await page.keyboard.press('Enter');
  await dialog().waitFor();
  assert.match(String(await dialog().textContent()), /Prefetching needs an account with the push right\./);
  await dialog().locator('button', { hasText: 'Cancel' }).click();
  await page.locator('.pf-status.error', { hasText: 'Not started: sign in with an account that may push first.' }).waitFor();

  await goHash('#/m/registry.ollama.ai/library/gemma2/2b');
  await page.click('#delete-tag');
  await dialog().waitFor();
  assert.match(String(await dialog().textContent()), /Deleting a tag needs an account with the delete right\./);
  await page.screenshot({ path: await artifact('actions-signed-out-delete.png') });
  await dialog().locator('button', { hasText: 'Cancel' }).click();
  await page.locator('.actions .error', { hasText: 'Not deleted: sign in with an account that may delete first.' }).waitFor();

  // The endpoints refuse on their own, whatever a page does.
  const pull = await request(reg.url, '/api/pull', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"tinyllama:1b"}' });
  assert.equal(pull.status, 401);
  assert.match(pull.json().errors[0].message, /credentials required to push/);
  const del = await request(reg.url, '/v2/library/gemma2/manifests/2b', { method: 'DELETE' });
  assert.equal(del.status, 401);
  assert.equal((await request(reg.url, '/v2/library/gemma2/manifests/2b')).status, 200);
  await access(gemma2b.manifestPath);
  assert.equal(front.blobBytes(), 0, 'nothing was fetched from the upstream');
});

test('a wrong password gives a readable error in the dialog; the right one signs in', async () => {
  await page.click('#sign-in');
  await fillSignIn('alice', 'wrong');
  await page.locator('dialog.signin .error', { hasText: 'Sign-in failed: wrong user name or password' }).waitFor();
  await page.screenshot({ path: await artifact('actions-wrong-password.png') });
  await fillSignIn('alice', 'sécret');
  await page.locator('#account', { hasText: 'Signed in as alice' }).waitFor();
  assert.equal(await dialog().count(), 0);
});

test('signed in, a prefetch shows progress per blob and in total with a rate, then done; the blobs are the upstream\'s bytes', async () => {
  await goHash('#/');
  await page.locator('#catalog').waitFor();
  assert.equal(await page.locator('#pf-hint').isVisible(), false);
  assert.equal(await page.locator('#catalog .row', { hasText: 'library/tinyllama' }).count(), 0);
  const totalBytes = tiny.blobs.reduce((n, b) => n + b.size, 0);
  await page.fill('#prefetch-name', 'tinyllama:1b');
  await page.keyboard.press('Enter');
  // Mid-way: a bar for every blob, a third to most of the total there, and a rate.
  const mid = await page.waitForFunction((n) => {
    const total = document.getElementById('pf-total') as HTMLProgressElement | null;
    const text = document.querySelector('.pf-total')?.textContent ?? '';
    const ok = document.querySelectorAll('.pf-blobs li').length === n && !!total && !total.hidden
      && total.value > total.max * 0.3 && total.value < total.max * 0.8 && text.endsWith('/s');
    return ok && { max: total.max, text, status: document.querySelector('.pf-status')?.textContent };
  }, tiny.blobs.length, { polling: 50 }).then((h) => h.jsonValue());
  await page.screenshot({ path: await artifact('prefetch-progress.png') });
  assert.ok(mid);
  assert.equal(mid.max, totalBytes);
  assert.match(mid.text, /^[\d.]+ MB of 6\.3 MB \([3-7]\d%\) · [\d.]+ (KB|MB)\/s$/);
  assert.match(String(mid.status), /^pulling [0-9a-f]{12}$/);
  const rows = await page.locator('.pf-blobs li').allTextContents();
  assert.ok(rows.some((r) => r.startsWith(tiny.blobs[0]!.digest.slice(7, 19)) && r.endsWith('/ 4.2 MB')), rows.join('\n'));

  await page.locator('.pf-status', { hasText: 'Done: tinyllama:1b is in the registry.' }).waitFor({ timeout: 30_000 });
  assert.match(String(await page.locator('.pf-total').textContent()), /^6\.3 MB of 6\.3 MB \(100%\)/);
  assert.deepEqual(await page.locator('.pf-blobs progress').evaluateAll((bars) => bars.map((b) => (b as HTMLProgressElement).value === (b as HTMLProgressElement).max)), tiny.blobs.map(() => true));
  await page.locator('#catalog .row', { hasText: 'library/tinyllama' }).waitFor();
  await page.screenshot({ path: await artifact('prefetch-done.png') });

  // Really in the data folder, byte for byte what the upstream holds.
  for (const b of tiny.blobs) {
    assert.equal(await sha256File(blobPath(reg.data, b.digest)), b.digest);
    assert.equal(await sha256File(blobPath(upstream.data, b.digest)), b.digest);
  }
  const stored = await reg.app.manifests.find('library', 'tinyllama', '1b');
  assert.ok(stored, 'the manifest is stored');
  assert.deepEqual(await readFile(path.join(reg.data, 'manifests', stored.host, 'library', 'tinyllama', '1b')), tiny.manifestBytes);
  assert.ok(front.blobBytes() >= 6 * MiB, `${front.blobBytes()} bytes came through the upstream link`);
});

test('signed in, deleting a tag removes it; an account without the delete right is told why and can switch', async () => {
  // Another tag remains: the page shows it.
  await goHash('#/m/registry.ollama.ai/library/gemma2/2b');
  page.once('dialog', (d) => void d.accept());
  await page.click('#delete-tag');
  await page.locator('h1').filter({ hasText: 'gemma2:latest' }).waitFor();
  assert.deepEqual(await page.locator('.tags .chip').allTextContents(), ['latest 1.2 KB']);
  await assert.rejects(access(gemma2b.manifestPath), /ENOENT/);
  // Not on the upstream either, so a GET answers 404 (a cached model would be fetched again).
  assert.equal((await request(reg.url, '/v2/library/gemma2/manifests/2b')).status, 404);

  // carol may push, not delete: the registry's refusal is shown, and nothing is deleted.
  await page.click('#sign-out');
  await page.click('#sign-in');
  await fillSignIn('carol', 'carol-pw');
  await page.locator('#account', { hasText: 'Signed in as carol' }).waitFor();
  page.once('dialog', (d) => void d.accept());
  await page.click('#delete-tag');
  await dialog().waitFor();
  assert.match(String(await dialog().textContent()), /Your account may not do this: user carol may not delete library\/gemma2 \(it has: library:pull,push\); ask the registry's admin to grant delete in namespace library/);
  await dialog().locator('button', { hasText: 'Cancel' }).click();
  await page.locator('.actions .error', { hasText: 'Not deleted: user carol may not delete library/gemma2' }).waitFor();
  await page.screenshot({ path: await artifact('actions-delete-refused.png') });
  assert.equal((await request(reg.url, '/v2/library/gemma2/manifests/latest')).status, 200);

  // Signing in as alice from the refusal deletes it; its last tag gone, the catalog no longer lists it.
  page.once('dialog', (d) => void d.accept());
  await page.click('#delete-tag');
  await fillSignIn('alice', 'sécret');
  await page.locator('#status', { hasText: 'Deleted library/gemma2:latest.' }).waitFor();
  await page.locator('#catalog .row', { hasText: 'library/tinyllama' }).waitFor();
  assert.equal(await page.locator('#catalog .row', { hasText: 'library/gemma2' }).count(), 0);
  const gone = await request(reg.url, '/v2/library/gemma2/manifests/latest');
  assert.equal(gone.status, 404);
  assert.equal(gone.json().errors[0].code, 'MANIFEST_UNKNOWN');
  await page.locator('#account', { hasText: 'Signed in as alice' }).waitFor();
  await page.screenshot({ path: await artifact('actions-deleted.png') });
});

test('when reads need credentials, the page asks to sign in and then lists what the user may pull', async () => {
  const priv = await startTestRegistry({ config: { auth: { ...defaults().auth, anonymousRead: false } } });
  try {
    const license = 'Team licence, long enough to be cut on the page.\n'.repeat(2000); // ~100 kB, past the 64 KiB shown
    await makeModel(priv.data, { namespace: 'team', model: 'tool', tag: 'v1', layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: 4096 },
      { mediaType: 'application/vnd.ollama.image.license', content: license },
    ] });
    await makeModel(priv.data, { model: 'gemma2', tag: '2b' });
    await addUser(priv, 'dora', 'pw-dora', 'team', ['pull']);
    // A link to a model, signed out: the reason and a way to sign in.
    await page.goto(`${priv.url}/#/m/registry.ollama.ai/team/tool/v1`);
    await page.locator('#status.error', { hasText: 'Sign in to see this model (credentials required to pull from this registry).' }).waitFor();
    await goHash('#/');
    await page.locator('#count', { hasText: 'This registry shows its models to signed-in users: sign in to see them.' }).waitFor();
    await page.click('#sign-in');
    await fillSignIn('dora', 'pw-dora');
    await page.locator('#count', { hasText: '1 model' }).waitFor();
    assert.deepEqual(await page.locator('#catalog .row .name').allTextContents(), ['team/tool']);
    await page.click('#catalog .row .name');
    await page.locator('h1').filter({ hasText: 'team/tool:v1' }).waitFor();
    // The whole licence, fetched with the session's token (reads need credentials here).
    await page.locator('details.text summary', { hasText: 'License' }).click();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByText('Download all of it').click()]);
    const saved = await download.path();
    assert.ok(saved, 'the download was saved');
    assert.equal(await readFile(saved, 'utf8'), license);
    await goHash('#/');
    await page.locator('#sign-out').click();
    await page.locator('#count', { hasText: 'sign in to see them' }).waitFor();
  } finally {
    await priv.close();
  }
});
