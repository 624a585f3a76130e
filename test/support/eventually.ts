// Some effects land a moment after the response that caused them (metrics counted when a
// response closes, a policy file re-read on change): retry an assertion until it holds.

/** Runs `fn` until it stops throwing, or rethrows its last error after `ms`. */
export async function eventually(fn: () => Promise<void>, ms = 5000, stepMs = 50): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, stepMs));
    }
  }
}

/** Polls `fn` until it returns a truthy value, and returns that; throws after `ms`. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 20_000, stepMs = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
