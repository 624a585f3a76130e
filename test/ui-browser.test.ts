// The web catalog in a real browser (Debian's Chromium through playwright-core) against a
// registry on loopback: listing, search, sorting, a model page, the copied commands, hostile
// model content, 500 models. Screenshots land in test-artifacts/.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { promisify } from 'node:util';
import { artifact, LAN_NAME, launchBrowser } from './support/browser.js';
import { makeManyModels, makeModel, type MadeModel } from './support/models.js';
import { MAIN, startTestRegistry, tempDir, type TestRegistry } from './support/server.js';
import { makeLocalCert } from './support/tls.js';

const MODEL = 'application/vnd.ollama.image.model';
const TEMPLATE = 'application/vnd.ollama.image.template';
const SYSTEM = 'application/vnd.ollama.image.system';
const PARAMS = 'application/vnd.ollama.image.params';
const LICENSE = 'application/vnd.ollama.image.license';

// Each payload would set window.__pwned if it ever ran.
const HOSTILE = {
  family: '<img src=x onerror="window.__pwned=1">',
  quant: '<script>window.__pwned=2</script>',
  template: '</pre><script>window.__pwned=3</script>{{ .Prompt }}<img src=x onerror="window.__pwned=4">',
  system: '<b>bold?</b><iframe src="javascript:window.top.__pwned=5"></iframe>',
  license: '</code></pre><svg onload="window.__pwned=6"></svg>&lt;not an entity&gt; <a href="javascript:window.__pwned=7">x</a>',
  stop: '"><script>window.__pwned=8</script>',
};

let reg: TestRegistry;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const made: Record<string, MadeModel> = {};

before(async () => {
  reg = await startTestRegistry();
  made.gemma = await makeModel(reg.data, {
    model: 'gemma2', tag: '2b', config: { model_family: 'gemma2', model_type: '2.6B', file_type: 'Q4_0' },
    layers: [
      { mediaType: MODEL, size: 2_000_000 },
      { mediaType: TEMPLATE, content: '<start_of_turn>user\n{{ .Prompt }}<end_of_turn>' },
      { mediaType: PARAMS, content: '{"stop":["<end_of_turn>"],"temperature":0.7}' },
      { mediaType: LICENSE, content: 'Gemma Terms of Use\n\nYou may use it.' },
    ],
  });
  await makeModel(reg.data, { model: 'gemma2', tag: 'latest', config: { model_family: 'gemma2', model_type: '9.2B', file_type: 'Q4_0' } });
  made.hf = await makeModel(reg.data, {
    host: 'hf.co', namespace: 'bartowski', model: 'Llama-3.2-1B-Instruct-GGUF', tag: 'Q4_K_M',
    config: { model_type: '1.2B', file_type: 'Q4_K_M' }, layers: [{ mediaType: MODEL, size: 5_000_000 }],
  });
  made.qwen = await makeModel(reg.data, { namespace: 'team', model: 'qwen2.5-coder', tag: '7b', config: { model_family: 'qwen2', model_type: '7.6B', file_type: 'Q8_0' } });
  made.hostile = await makeModel(reg.data, {
    model: 'hostile', tag: 'v1', config: { model_family: HOSTILE.family, file_type: HOSTILE.quant },
    layers: [
      { mediaType: MODEL, size: 100 },
      { mediaType: TEMPLATE, content: HOSTILE.template },
      { mediaType: SYSTEM, content: HOSTILE.system },
      { mediaType: PARAMS, content: JSON.stringify({ stop: [HOSTILE.stop] }) },
      { mediaType: LICENSE, content: HOSTILE.license },
    ],
  });
  made.noConfig = await makeModel(reg.data, { model: 'noconfig', config: { model_type: 'unique-browser' } });
  await rm(path.join(reg.data, 'blobs', `sha256-${made.noConfig.blobs.at(-1)!.digest.slice(7)}`));
  browser = await launchBrowser();
  context = await browser.newContext({ colorScheme: 'light', viewport: { width: 1280, height: 860 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: reg.url });
  page = await context.newPage();
});
after(async () => {
  await browser?.close();
  await reg?.close();
});

const rows = (p: Page) => p.locator('#catalog .row:visible');

async function openCatalog(p: Page, base = reg.url): Promise<void> {
  await p.goto(`${base}/`);
  await p.locator('#catalog').waitFor();
}

test('the catalog lists the models made in the test, with details and total disk use', async () => {
  await openCatalog(page);
  assert.equal(await rows(page).count(), 5);
  assert.equal(await page.locator('#count').textContent(), '5 models');
  const names = await page.locator('#catalog .row .name').allTextContents();
  assert.deepEqual(names, ['library/gemma2', 'library/hostile', 'bartowski/Llama-3.2-1B-Instruct-GGUF', 'library/noconfig', 'team/qwen2.5-coder']);
  const gemma = page.locator('#catalog .row', { hasText: 'library/gemma2' });
  assert.deepEqual(await gemma.locator('.chip').allTextContents(), ['latest', '2b']);
  assert.equal(await gemma.locator('.c-params').textContent(), '9.2B, 2.6B');
  assert.equal(await gemma.locator('.c-quant').textContent(), 'Q4_0');
  assert.equal(await page.locator('#catalog .row', { hasText: 'Llama-3.2' }).locator('.badge').textContent(), 'from hf.co');
  // The model whose config blob is missing is listed, marked.
  const nc = page.locator('#catalog .row', { hasText: 'noconfig' });
  assert.equal(await nc.locator('.warn-dot').count(), 1);
  assert.equal(await nc.locator('.c-family').textContent(), '—');
  assert.match(String(await page.locator('#disk').textContent()), /^Models use [\d.]+ MB \(\d+ blobs\)/);
  // Prefetch, delete and sign-in stay hidden until the server reports them (ui-actions.test.ts).
  assert.equal(await page.locator('.prefetch, #sign-in, #delete-tag').count(), 0);
  await page.screenshot({ path: await artifact('catalog-light.png'), fullPage: true });
});

test('search narrows the list as you type; Escape clears it; "/" focuses it', async () => {
  await openCatalog(page);
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'q');
  await page.keyboard.type('llama');
  assert.deepEqual(await rows(page).locator('.name').allTextContents(), ['bartowski/Llama-3.2-1B-Instruct-GGUF']);
  assert.equal(await page.locator('#count').textContent(), '1 of 5 models');
  await page.keyboard.press('Escape');
  assert.equal(await rows(page).count(), 5);
  // Words match anywhere (tag, family, quantization, host), all of them.
  await page.fill('#q', 'q8_0');
  assert.deepEqual(await rows(page).locator('.name').allTextContents(), ['team/qwen2.5-coder']);
  await page.fill('#q', 'gemma2 9.2b');
  assert.deepEqual(await rows(page).locator('.name').allTextContents(), ['library/gemma2']);
  await page.fill('#q', 'no such model');
  assert.equal(await rows(page).count(), 0);
  assert.equal(await page.locator('#count').textContent(), '0 of 5 models');
  // The filter is kept in the address, so Back from a model page restores it.
  await page.fill('#q', 'qwen');
  await page.locator('#catalog .row .name:visible').click();
  await page.locator('h1').filter({ hasText: 'qwen2.5-coder' }).waitFor();
  await page.goBack();
  await page.locator('#catalog').waitFor();
  assert.equal(await page.inputValue('#q'), 'qwen');
  assert.equal(await rows(page).count(), 1);
});

test('sorting by size and by date, and reversing', async () => {
  await openCatalog(page);
  await page.selectOption('#sort', 'size');
  const bySize = await rows(page).locator('.name').allTextContents();
  assert.equal(bySize[0], 'bartowski/Llama-3.2-1B-Instruct-GGUF');
  assert.equal(bySize[1], 'library/gemma2');
  await page.click('#dir');
  assert.deepEqual(await rows(page).locator('.name').allTextContents(), [...bySize].reverse());
  assert.equal(await page.locator('#dir').textContent(), 'Smallest first');
  await page.selectOption('#sort', 'date');
  const byDate = await rows(page).locator('.name').allTextContents();
  assert.equal(byDate.at(-1), 'library/noconfig'); // newest last when reversed
});

test('a model page shows the right details, and the copy buttons copy exactly the commands', async () => {
  await openCatalog(page);
  await page.locator('#catalog .row', { hasText: 'library/gemma2' }).locator('.chip', { hasText: '2b' }).click();
  await page.locator('h1').filter({ hasText: 'gemma2:2b' }).waitFor();
  const fact = (k: string) => page.locator('.facts div', { has: page.locator('dt', { hasText: new RegExp(`^${k}$`) }) }).locator('dd').textContent();
  assert.equal(await fact('Family'), 'gemma2');
  assert.equal(await fact('Parameters'), '2.6B');
  assert.equal(await fact('Quantization'), 'Q4_0');
  assert.equal(await fact('ID \\(ollama list\\)'), made.gemma.manifestDigest.slice(7, 19));
  assert.equal(await fact('Manifest digest'), made.gemma.manifestDigest);
  assert.equal(await page.locator('details.text', { hasText: 'Template' }).locator('pre').textContent(), '<start_of_turn>user\n{{ .Prompt }}<end_of_turn>');
  assert.deepEqual(await page.locator('.params tr').allTextContents(), ['stop"<end_of_turn>"', 'temperature0.7']);
  await page.locator('summary', { hasText: 'License' }).click();
  assert.equal(await page.locator('details.text', { hasText: 'License' }).locator('pre').textContent(), 'Gemma Terms of Use\n\nYou may use it.');
  // The size as `ollama-registry ls` prints it, both in ollama's way of writing sizes.
  const { stdout: ls } = await promisify(execFile)(process.execPath, [MAIN, 'ls', '--data', reg.data], { env: { ...process.env, OLLAMA_REGISTRY_CONFIG: '' } });
  const cliSize = ls.split('\n').find((l) => l.startsWith('registry.ollama.ai/library/gemma2:2b '))?.split(/\s{2,}/)[2];
  assert.equal(cliSize, '2.0 MB');
  assert.equal(await page.locator('a.chip[aria-current="page"]').textContent(), `2b ${cliSize}`);

  const host = reg.hostPort;
  const ip = new URL(reg.url).hostname;
  const copies = await page.locator('button.copy').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-copy')));
  assert.deepEqual(copies, [
    `ollama pull --insecure ${host}/library/gemma2:2b`,
    `ollama cp ${host}/library/gemma2:2b gemma2:2b`,
    `ollama pull --insecure ${ip}/library/gemma2:2b`,
    `ollama cp ${ip}/library/gemma2:2b gemma2:2b`,
  ]);
  assert.match(String(await page.locator('.os', { hasText: 'Windows' }).locator('.note').textContent()), /port 80/);
  // What a click really puts on the clipboard.
  for (const [i, want] of copies.entries()) {
    await page.locator('button.copy').nth(i).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), want);
  }
  assert.equal(await page.locator('button.copy').first().textContent(), 'Copied');
  await page.screenshot({ path: await artifact('model-light.png'), fullPage: true });
});

test('keyboard only: Tab to a model link, Enter opens it, Tab reaches the copy buttons', async () => {
  await openCatalog(page);
  await page.focus('#q');
  await page.fill('#q', 'qwen');
  // Tab past the toolbar to the first visible model link.
  for (let i = 0; i < 10; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement?.classList.contains('name'))) break;
  }
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'team/qwen2.5-coder');
  await page.keyboard.press('Enter');
  await page.locator('h1').filter({ hasText: 'qwen2.5-coder:7b' }).waitFor();
  let reached = false;
  for (let i = 0; i < 15 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.classList.contains('copy') ?? false);
  }
  assert.ok(reached, 'a copy button is reachable with Tab');
});

test('hostile names, templates and licenses are shown as text and never run', async () => {
  await openCatalog(page);
  const row = page.locator('#catalog .row', { hasText: 'library/hostile' });
  assert.equal(await row.locator('.c-family').textContent(), HOSTILE.family);
  assert.equal(await row.locator('.c-quant').textContent(), HOSTILE.quant);
  await row.locator('a.name').click();
  await page.locator('h1').filter({ hasText: 'hostile:v1' }).waitFor();
  await page.locator('summary', { hasText: 'License' }).click();
  const pre = (title: string) => page.locator('details.text', { hasText: title }).locator('pre').textContent();
  assert.equal(await pre('Template'), HOSTILE.template);
  assert.equal(await pre('System prompt'), HOSTILE.system);
  assert.equal(await pre('License'), HOSTILE.license);
  assert.equal(await page.locator('.params td').textContent(), JSON.stringify(HOSTILE.stop));
  assert.equal(await page.locator('main script, main img, main iframe, main svg, main b, main a[href^="javascript"]').count(), 0);
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
  // A name that is not ollama's grammar in the hash is refused by the API, shown as text.
  await page.goto(`${reg.url}/#/m/registry.ollama.ai/library/${encodeURIComponent('<img src=x onerror=window.__pwned=9>')}`);
  await page.locator('.status.error').waitFor();
  assert.match(String(await page.locator('.status.error').textContent()), /invalid model/);
  assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
});

test('a model with a missing config blob has a page that says so', async () => {
  await page.goto(`${reg.url}/#/m/registry.ollama.ai/library/noconfig`);
  await page.locator('h1').filter({ hasText: 'noconfig:latest' }).waitFor();
  assert.ok(await page.locator('.warn', { hasText: 'config blob is missing' }).isVisible());
  assert.equal(await page.locator('.layers tbody tr').count(), 4);
  assert.equal(await page.locator('button.copy').first().getAttribute('data-copy'), `ollama pull --insecure ${reg.hostPort}/library/noconfig:latest`);
});

test('dark mode and a phone-sized screen', async () => {
  const dark = await browser.newContext({ colorScheme: 'dark', viewport: { width: 1280, height: 860 } });
  const p = await dark.newPage();
  await openCatalog(p);
  const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(17, 20, 24)');
  await p.screenshot({ path: await artifact('catalog-dark.png'), fullPage: true });
  await p.goto(`${reg.url}/#/m/registry.ollama.ai/library/gemma2/2b`);
  await p.locator('h1').filter({ hasText: 'gemma2:2b' }).waitFor();
  await p.screenshot({ path: await artifact('model-dark.png'), fullPage: true });
  await dark.close();
  const phone = await browser.newContext({ colorScheme: 'light', viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const q = await phone.newPage();
  await openCatalog(q);
  // Nothing wider than the screen: no sideways scrolling.
  assert.ok(await q.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'catalog fits a phone');
  await q.screenshot({ path: await artifact('catalog-phone.png'), fullPage: true });
  await q.goto(`${reg.url}/#/m/hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF/Q4_K_M`);
  await q.locator('h1').filter({ hasText: 'Q4_K_M' }).waitFor();
  assert.ok(await q.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'model page fits a phone');
  await q.screenshot({ path: await artifact('model-phone.png'), fullPage: true });
  await phone.close();
});

test('plain HTTP by a LAN name: the commands use that name, and copying works without the Clipboard API', async () => {
  const port = new URL(reg.url).port;
  const lan = await context.newPage();
  await lan.goto(`http://${LAN_NAME}:${port}/#/m/registry.ollama.ai/library/gemma2/2b`);
  await lan.locator('h1').filter({ hasText: 'gemma2:2b' }).waitFor();
  assert.equal(await lan.evaluate(() => window.isSecureContext), false);
  const want = `ollama pull --insecure ${LAN_NAME}:${port}/library/gemma2:2b`;
  assert.equal(await lan.locator('button.copy').first().getAttribute('data-copy'), want);
  assert.equal(await lan.locator('button.copy').nth(2).getAttribute('data-copy'), `ollama pull --insecure ${LAN_NAME}/library/gemma2:2b`);
  await lan.evaluate(() => navigator.clipboard?.writeText('old'));
  await page.evaluate(() => navigator.clipboard.writeText('old'));
  await lan.locator('button.copy').first().click();
  await lan.locator('button.copy', { hasText: 'Copied' }).waitFor();
  // The browser's clipboard, read from a page where reading is allowed.
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), want);
  await lan.close();
});

test('over HTTPS the commands drop --insecure and the Windows advice is port 443', async () => {
  const { cert, key } = await makeLocalCert(await tempDir());
  const tls = await startTestRegistry({ config: { tls: { cert, key } } });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    await makeModel(tls.data, { model: 'tiny', tag: '1b' });
    const p = await ctx.newPage();
    await p.goto(`${tls.url}/#/m/registry.ollama.ai/library/tiny/1b`);
    await p.locator('h1').filter({ hasText: 'tiny:1b' }).waitFor();
    assert.match(tls.url, /^https:/);
    assert.deepEqual(await p.locator('button.copy').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-copy'))), [
      `ollama pull ${tls.hostPort}/library/tiny:1b`, `ollama cp ${tls.hostPort}/library/tiny:1b tiny:1b`,
      'ollama pull 127.0.0.1/library/tiny:1b', 'ollama cp 127.0.0.1/library/tiny:1b tiny:1b',
    ]);
    assert.match(String(await p.locator('.os .note').textContent()), /port 443/);
  } finally {
    await ctx.close();
    await tls.close();
  }
});

test('500 models: the whole list is painted, and a search narrows it', async () => {
  // How fast is measured by `npm run bench -- ui`, not here.
  const big = await startTestRegistry();
  try {
    await makeManyModels(big.data, 500);
    const p = await context.newPage();
    await p.goto(`${big.url}/`);
    const c = p.locator('#catalog[data-painted-at]');
    await c.waitFor({ state: 'attached' });
    assert.ok(Number(await c.getAttribute('data-painted-at')) > 0);
    assert.equal(await p.locator('#catalog .row').count(), 500);
    assert.equal(await p.locator('#count').textContent(), '500 models');
    await p.fill('#q', 'gemma2 q8_0');
    const shown = await p.locator('#catalog .row:visible').count();
    assert.ok(shown > 0 && shown < 500, `${shown} shown`);
    for (const name of await p.locator('#catalog .row:visible .name').allTextContents()) assert.match(name, /model-\d{3}/);
    await p.close();
  } finally {
    await big.close();
  }
});
