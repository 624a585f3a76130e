// Which stored models are a cache of an upstream (evictable under the size cap) and which are
// local content: pushed, imported or copied in, never evicted. A host folder is a cache when it
// is a configured upstream's, is listed in `storage.cachedHosts`, or is recorded in the data
// folder (.ollama-registry/cached-hosts.json) because a pull-through once stored a model there:
// so `ls` and `gc` run without the upstream's settings still know it. `pushHost` never is.
import type { Config } from '../../config.js';
import type { Driver } from '../../storage/driver.js';
import { StateList } from './state-list.js';

type WithFeatures = Pick<Config, 'storage'> & { upstreams?: Array<{ host: string }>; pushHost?: string };

/** Host folders (lower case) that a pull-through has stored models in. */
export function cachedHostRecord(driver: Driver): StateList {
  return new StateList(driver, 'cached-hosts.json');
}

/**
 * Where a host folder's models come from: `pushed` (the `pushHost` folder), `cache` (copies of
 * an upstream's, evictable) or `local` (imported or copied in). Host folder names compare without
 * case, as lookups do. `ls` and gc tell only cache from the rest; the web page tells pushed ones.
 */
export function sourceOf(config: WithFeatures, host: string, recorded: ReadonlySet<string> = new Set()): 'pushed' | 'cache' | 'local' {
  const h = host.toLowerCase();
  if (config.pushHost?.toLowerCase() === h) return 'pushed';
  if (recorded.has(h)) return 'cache';
  const cached = [...(config.upstreams ?? []).map((u) => u.host), ...config.storage.cachedHosts];
  return cached.some((x) => x.toLowerCase() === h) ? 'cache' : 'local';
}

export function isCachedHost(config: WithFeatures, host: string, recorded?: ReadonlySet<string>): boolean {
  return sourceOf(config, host, recorded) === 'cache';
}
