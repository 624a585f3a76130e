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
