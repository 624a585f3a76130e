// A pull-through stack for tests: an upstream registry (our own server) holding models, the
// fault-injecting counting front of it, and a cache registry whose upstream is that front. The
// front behaves as registry.ollama.ai does (blobs 307 to a CDN host that refuses HEAD, text/plain
// manifests without Docker-Content-Digest, no /v2/) unless `like: 'registry'` asks for a plain
// registry (our own server's answers, passed through).
import type { Config } from '../../src/config.js';
import { finishRouting, upstreamFromUrl } from '../../src/upstream/config.js';
import { startFaultUpstream, type FaultUpstream } from './fault-upstream.js';
import { startTestRegistry, type TestRegistry } from './server.js';

export interface CacheStack {
  upstream: TestRegistry;
  front: FaultUpstream;
  cache: TestRegistry;
  close(): Promise<void>;
}

/** Upstream settings for a test: short timeouts so faults resolve in seconds. */
export function upstreamConfig(url: string, extra: Record<string, unknown> = {}): Pick<Config, 'upstreams' | 'routes'> {
  const upstreams = [upstreamFromUrl(url, 'upstream', { name: 'up', timeout: '2s', retries: 1, failTimeout: '2s', ...extra })];
  return { upstreams, routes: finishRouting(upstreams, []) };
}

export async function startCacheStack(
  opts: { rate?: number; like?: 'registry.ollama.ai' | 'registry'; upstream?: Record<string, unknown>; config?: Partial<Config>; cacheData?: string } = {},
): Promise<CacheStack> {
  const origin = await startTestRegistry();
  const front = await startFaultUpstream(origin.url, { rate: opts.rate, like: opts.like === 'registry' ? undefined : 'registry.ollama.ai' });
  // The front's CDN host (127.0.0.2) is a loopback address: listed, so its redirects are followed.
  const upstream = { allowPrivateHosts: [new URL(front.cdnUrl).hostname], ...opts.upstream };
  const cache = await startTestRegistry({ data: opts.cacheData, config: { ...upstreamConfig(front.url, upstream), ...opts.config } });
  return {
    upstream: origin, front, cache,
    async close() {
      await cache.app.cache?.close();
      await cache.close();
      await front.close();
      await origin.close();
    },
  };
}
