// undici, the HTTP client for upstreams, is loaded only where an upstream is configured: a plain
// registry would otherwise carry its ~5 MiB of heap (and its parser's WebAssembly) for nothing.
import type * as Undici from 'undici';

let loaded: typeof Undici | undefined;

/** Load undici; app.ts awaits this before making the pull-through cache. */
export async function loadUndici(): Promise<typeof Undici> {
  loaded ??= await import('undici');
  return loaded;
}

/** undici, once loadUndici() has run (an Upstream exists only after it has). */
export function undici(): typeof Undici {
  if (!loaded) throw new Error('undici is not loaded: await loadUndici() before making an Upstream');
  return loaded;
}

/** Whether `e` is one of undici's errors (false while undici was never loaded: then it cannot be). */
export function isUndiciError(e: unknown): boolean {
  return loaded !== undefined && e instanceof loaded.errors.UndiciError;
}
