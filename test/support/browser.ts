// A real browser for the web page's tests: Debian's Chromium (apt-get install chromium) driven
// by playwright-core. Screenshots go to test-artifacts/ (not committed) for a person to look at.
// Every page of every browser launched here is watched: an uncaught error or a console error in
// any of them fails the test that was running (in a test file) or is returned by takePageErrors().
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test-artifacts');

/** A name that resolves to loopback inside the browser only: a page on it is plain HTTP on a
 * non-localhost name, as on a LAN (not a secure context, so no Clipboard API). */
export const LAN_NAME = 'registry.lan.test';

const pageErrors: string[] = [];
const watched = new WeakSet<Page>();

function watch(page: Page): void {
  if (watched.has(page)) return;
  watched.add(page);
  page.on('pageerror', (e) => pageErrors.push(`error in ${page.url()}: ${e.message}`));
  // A refused request the page expects (a 401 before sign-in, a 404) is logged by Chromium as
  // "Failed to load resource": the tests check those answers themselves.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console error in ${page.url()}: ${m.text()}`);
  });
}

/** The page errors seen since the last call (and forgets them). */
export function takePageErrors(): string[] {
  return pageErrors.splice(0);
}

// In a test file (not in scripts/image-smoke.sh's helper, where node:test would print a report).
if (process.env.NODE_TEST_CONTEXT || process.argv[1]?.endsWith('.test.js')) {
  afterEach(() => {
    const errors = takePageErrors();
    if (errors.length) throw new Error(`the page had errors:\n${errors.join('\n')}`);
  });
}

export async function launchBrowser(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP ${LAN_NAME} 127.0.0.1`],
  });
  // Every context and page made from this browser, however the test makes it.
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (...args) => {
    const ctx = await newContext(...args);
    ctx.on('page', watch);
    for (const p of ctx.pages()) watch(p);
    return ctx;
  };
  const newPage = browser.newPage.bind(browser);
  browser.newPage = async (...args) => {
    const p = await newPage(...args);
    watch(p);
    return p;
  };
  return browser;
}

export async function artifact(name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
