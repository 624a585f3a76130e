// Which stored models are a cache of an upstream (evictable under the size cap) and which are
// local content: pushed, imported or copied in, never evicted. The one place to adapt when
// upstreams (`upstreams[].host`) and the push host (`pushHost`) are configured.
import type { Config } from '../config.js';

type WithFeatures = Config & { upstreams?: Array<{ host: string }>; pushHost?: string };

export function isCachedHost(config: Config, host: string): boolean {
  const c = config as WithFeatures;
  const h = host.toLowerCase();
  if (c.pushHost?.toLowerCase() === h) return false;
  const cached = [...(c.upstreams ?? []).map((u) => u.host), ...config.storage.cachedHosts];
  return cached.some((x) => x.toLowerCase() === h);
}

/** What `ls` shows as the source of a host folder's models. */
export function sourceOf(config: Config, host: string): 'cache' | 'local' {
  return isCachedHost(config, host) ? 'cache' : 'local';
}
