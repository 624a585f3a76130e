// Whether ollama's clients will follow a redirect from the registry to a URL (a presigned S3 URL).
// ollama's newer clients check every blob redirect (x/transfer, commit 317f6dab "reject unsafe blob
// redirects", then PR #18512): only http and https; never https → http, even with --insecure;
// never a host that is or resolves to a loopback, private, link-local or CGNAT address, unless
// --insecure; the registry's own host is exempt. A registry that sends such a 307 breaks those
// pulls outright, so it redirects only when the target passes, and streams the bytes otherwise.
// Two more facts of ollama's clients shape the answer (protocol §2.3 row 2c):
// - the (legacy) downloader's probe follows a redirect to the registry's own hostname, whatever
//   the port, and then needs a Location header on the final 200, which a store never sends: a
//   store on the registry's hostname breaks every pull, so that target is refused;
// - ollama talks plain http to a registry only with --insecure, so a client that reached us over
//   http has the address checks relaxed.
// Our address test is the upstream guard's (a superset of ollama's ranges): when in doubt, stream.
import dns from 'node:dns/promises';
import net from 'node:net';
import { isLocalAddress } from '../upstream/guard.js';

export type RedirectVerdict = { ok: true } | { ok: false; reason: string };

export interface RedirectRuleOptions {
  /** The clients pull with --insecure: address checks are relaxed (https → http still is not). Default: the registry URL is http. */
  insecure?: boolean;
  /** Name → addresses; the system resolver by default. */
  lookup?: (host: string) => Promise<string[]>;
  /** How long a lookup may take before the target counts as unresolvable (ms). */
  lookupTimeoutMs?: number;
}

function bare(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
}

async function systemLookup(host: string): Promise<string[]> {
  return (await dns.lookup(host, { all: true })).map((a) => a.address);
}

async function resolve(host: string, o: RedirectRuleOptions): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${o.lookupTimeoutMs ?? 5000} ms`)), o.lookupTimeoutMs ?? 5000);
  });
  try {
    return await Promise.race([(o.lookup ?? systemLookup)(host), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Whether an ollama client that pulled from `registryUrl` follows a redirect to `target`.
 * The answer for a fixed redirect endpoint only changes with its DNS, so callers may cache it.
 */
export async function redirectAllowed(target: string | URL, registryUrl: string | URL, o: RedirectRuleOptions = {}): Promise<RedirectVerdict> {
  let to: URL;
  let from: URL;
  try {
    to = new URL(target);
    from = new URL(registryUrl);
  } catch {
    return { ok: false, reason: 'not a URL' };
  }
  if (to.protocol !== 'http:' && to.protocol !== 'https:') return { ok: false, reason: `${to.protocol.slice(0, 20)} is not http or https` };
  const host = bare(to.hostname);
  if (host === '') return { ok: false, reason: 'no host' };
  if (from.protocol === 'https:' && to.protocol === 'http:') return { ok: false, reason: 'https to http is refused' };
  if (host === bare(from.hostname)) return { ok: false, reason: `${host} is the registry's own hostname (ollama's downloader follows such a redirect and then fails)` };
  if (o.insecure ?? from.protocol === 'http:') return { ok: true };
  if (host === 'localhost' || host.endsWith('.localhost')) return { ok: false, reason: `${host} is a local host` };
  let addresses: string[];
  try {
    addresses = net.isIP(host) ? [host] : await resolve(host, o);
  } catch (e) {
    return { ok: false, reason: `${host} does not resolve: ${(e as Error).message.split('\n')[0]}` };
  }
  if (addresses.length === 0) return { ok: false, reason: `${host} has no address` };
  const local = addresses.find((a) => isLocalAddress(a));
  if (local) return { ok: false, reason: `${host} is a local address (${local})` };
  return { ok: true };
}
