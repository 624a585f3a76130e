// The site table: which site a request is for, from its Host header (the TLS front makes sure
// the Host is the SNI name). A site says which host folder answers and which upstream fills.
// Every Host is the registry's own site (host folders in the configured lookup order, upstreams
// routed by namespace), except the mirror's intercepted hosts: `registry.ollama.ai` answers from
// host folder registry.ollama.ai, filled from the upstream whose host folder that is.
import type { App } from '../app.js';
import type { Upstream } from '../upstream/client.js';

export interface Site {
  /** The name the site answers to; '' for the registry's own site. */
  name: string;
  /** The one host folder that answers; none: every host folder, in lookup order. */
  host?: string;
  /** The upstream that fills; none: routed by namespace (`upstreams:` routes). */
  upstream?: Upstream;
}

export const OWN_SITE: Site = Object.freeze({ name: '' });

export interface SiteTable {
  /** The site of a Host header value (port and case ignored). */
  lookup(hostHeader: string | undefined): Site;
  /** The names of the sites other than the registry's own (the TLS front's certificate names). */
  names(): string[];
}

export function siteTable(app: App): SiteTable {
  const sites = new Map<string, Site>();
  for (const name of app.config.mirror?.hosts ?? []) {
    const host = name.toLowerCase();
    const upstream = app.cache?.upstreamForHost(host);
    // With no upstream for it, an intercepted host is answered as the registry's own site.
    sites.set(host, Object.freeze(upstream ? { name: host, host, upstream } : { name: host }));
  }
  return {
    lookup(hostHeader) {
      if (sites.size === 0 || !hostHeader) return OWN_SITE;
      const name = hostHeader.replace(/:\d{1,5}$/, '').toLowerCase();
      return sites.get(name) ?? OWN_SITE;
    },
    names: () => [...sites.keys()],
  };
}

/** The upstreams that fill for a site: its own, or undefined (the cache routes by namespace). */
export function siteUpstreams(site: Site): Upstream[] | undefined {
  return site.upstream ? [site.upstream] : undefined;
}
