// Under CI=true the machine has everything scripts/test.sh installs and runs as root, so a test
// that cannot run what it is about fails there instead of skipping (a skip would read as green).
import type { TestContext } from 'node:test';

export const IN_CI = process.env.CI === 'true';

/** For node:test's `skip` option: the reason elsewhere; under CI false, so the test runs and fails on what is missing. */
export function skipUnlessCI(reason: string | false): string | false {
  return IN_CI ? false : reason;
}

/** Inside a test: skip with the reason, or under CI fail with it. */
export function skipOrFail(t: TestContext, reason: string): void {
  if (IN_CI) throw new Error(`cannot run under CI=true: ${reason}`);
  t.skip(reason);
}
