// A real browser for the web page's tests: Debian's Chromium (apt-get install chromium) driven
// by playwright-core. Screenshots go to test-artifacts/ (not committed) for a person to look at.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test-artifacts');

/** A name that resolves to loopback inside the browser only: a page on it is plain HTTP on a
 * non-localhost name, as on a LAN (not a secure context, so no Clipboard API). */
export const LAN_NAME = 'registry.lan.test';

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP ${LAN_NAME} 127.0.0.1`],
  });
}

export async function artifact(name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
