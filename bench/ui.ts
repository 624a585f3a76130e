// Web catalog bench: 500 models in Chromium, navigation start to the whole list painted (timed by
// the page itself: data-painted-at, data-fetched-at, data-render-ms on #catalog), and one search
// keystroke. The goal is 1 s to paint; ui-browser.test.ts checks only that it works.
import { launchBrowser } from '../test/support/browser.js';
import { makeManyModels } from '../test/support/models.js';
import { startTestRegistry } from '../test/support/server.js';
import { median, type Row } from './lib/table.js';

export async function benchUi(o: { rounds?: number } = {}): Promise<Row[]> {
  const rounds = o.rounds ?? 5;
  const reg = await startTestRegistry();
  const browser = await launchBrowser();
  try {
    await makeManyModels(reg.data, 500);
    const p = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const painted: number[] = [];
    const fetched: number[] = [];
    const dom: number[] = [];
    const filter: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await p.goto(`${reg.url}/?run=${i}`);
      const c = p.locator('#catalog[data-painted-at]');
      await c.waitFor({ state: 'attached' });
      const [a, b, d] = await Promise.all(['data-painted-at', 'data-fetched-at', 'data-render-ms'].map(async (n) => Number(await c.getAttribute(n))));
      painted.push(a!);
      fetched.push(b!);
      dom.push(d!);
      const t0 = performance.now();
      await p.fill('#q', 'gemma2 q8_0');
      await p.locator('#count', { hasText: /of 500 models/ }).waitFor();
      filter.push(performance.now() - t0);
    }
    const row = (metric: string, runs: number[], goal?: number): Row => ({
      metric, unit: 'ms', ours: median(runs), oursRuns: runs, goal: goal ? `<= ${goal}` : '-', pass: goal ? median(runs) <= goal : undefined,
    });
    return [
      row('500 models: navigation start → whole list painted', painted, 1000),
      row('  of which: catalog data fetched', fetched),
      row('  of which: DOM built', dom),
      row('search keystroke → filtered list (playwright wall time)', filter),
    ];
  } finally {
    await browser.close();
    await reg.close();
  }
}
