// Where an upstream may send this registry: a redirect (registry.ollama.ai's 307 to its CDN) or
// a token realm in a WWW-Authenticate challenge is a URL chosen by the upstream, or by anyone on
// a plain-HTTP link to it. Followed blindly, it makes the cache fetch internal services for
// anonymous clients. So every hop must be http(s) (https once https, and https unless the
// upstream itself is plain http), and must not reach a loopback, private, link-local, CGNAT or
// otherwise local address, unless it is the upstream's own host (as ollama exempts only the
// registry's own host) or a host listed in the upstream's `allowPrivateHosts`.
// Names are checked after DNS resolution, inside the connection's own lookup, so the address
// that was checked is the one connected to (a DNS rebind cannot swap it in between).
import dns, { type LookupAddress } from 'node:dns';
import net from 'node:net';
import { UpstreamError } from './common.js';

const LOCAL_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
];
const LOCAL = new net.BlockList();
for (const [a, p] of LOCAL_V4) {
  LOCAL.addSubnet(a, p, 'ipv4');
  // The same ranges inside NAT64 (64:ff9b::a.b.c.d; DNS64 maps public hosts there, so only the
  // local ones are refused) and 6to4 (2002:aabb:ccdd::). IPv4-mapped addresses (::ffff:a.b.c.d)
  // are checked against the IPv4 rules by BlockList itself.
  const [w, x, y, z] = a.split('.').map(Number) as [number, number, number, number];
  const hex = `${((w << 8) | x).toString(16)}:${((y << 8) | z).toString(16)}`;
  LOCAL.addSubnet(`64:ff9b::${hex}`, 96 + p, 'ipv6');
  LOCAL.addSubnet(`2002:${hex}::`, 16 + p, 'ipv6');
}
for (const [a, p] of [
  ['::', 96], // ::, ::1 and the old IPv4-compatible ::a.b.c.d
  ['64:ff9b:1::', 48], // local-use NAT64
  ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) LOCAL.addSubnet(a, p, 'ipv6');

/** True for an IP address that is loopback, private, link-local, CGNAT, unspecified or multicast. */
export function isLocalAddress(address: string): boolean {
  const v = net.isIP(address);
  return v !== 0 && LOCAL.check(address, v === 6 ? 'ipv6' : 'ipv4');
}

function bare(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

/** What an upstream's URL says, for a message: never more than a short host and scheme. */
function shown(u: URL): string {
  return `${u.protocol}//${u.host}`.slice(0, 120);
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

export class OutboundGuard {
  private readonly trusted: Set<string>;

  /** `proxied`: requests may go through HTTP(S)_PROXY, which resolves names itself. */
  constructor(private readonly up: { name: string; base: URL; describe(): string }, allowHosts: string[] = [], private readonly proxied = false) {
    this.trusted = new Set([bare(up.base.hostname), ...allowHosts.map(bare)]);
  }

  private refuse(why: string): UpstreamError {
    return new UpstreamError(this.up.name, 'refused', `${this.up.describe()} ${why}`);
  }

  /**
   * Throws unless `next` may be requested. `from`: the URL that sent us there (none for a
   * request of our own); `what`: how the upstream named it, for the message ("redirected to").
   */
  async check(next: URL, from: URL | undefined, what: string): Promise<void> {
    const plainOk = this.up.base.protocol === 'http:' && (!from || from.protocol === 'http:');
    if (next.protocol !== 'https:' && !(next.protocol === 'http:' && plainOk)) {
      throw this.refuse(next.protocol === 'http:'
        ? `${what} ${shown(next)}: plain http after https is not followed`
        : `${what} a ${next.protocol.slice(0, 20)} URL: only http and https are followed`);
    }
    const host = bare(next.hostname);
    if (this.trusted.has(host)) return;
    if (net.isIP(host)) {
      if (isLocalAddress(host)) throw this.localRefusal(what, next.host, host);
      return;
    }
    // Direct connections check names in lookup() below; through a proxy the proxy connects, so
    // check what the name resolves to here (a name that does not resolve here is left to it).
    if (!this.proxied) return;
    const addrs = await dns.promises.lookup(host, { all: true }).catch(() => []);
    const bad = addrs.find((a) => isLocalAddress(a.address));
    if (bad) throw this.localRefusal(what, next.host, bad.address);
  }

  private localRefusal(what: string, host: string, address: string): UpstreamError {
    const at = bare(host.replace(/:\d+$/, '')) === address ? host : `${host} (${address})`;
    return this.refuse(`${what} ${at.slice(0, 120)}, a local or private address: not followed (allowPrivateHosts in the upstream's settings lists hosts that may be)`);
  }

  /** For the connection's `lookup`: resolve, refuse if any address is local, connect to what was checked. */
  readonly lookup = (hostname: string, options: dns.LookupOptions, callback: LookupCallback): void => {
    dns.lookup(hostname, { ...options, all: true }, (err, addrs) => {
      if (err) return callback(err, '');
      const bad = this.trusted.has(bare(hostname)) ? undefined : addrs.find((a) => isLocalAddress(a.address));
      if (bad) return callback(this.localRefusal('sent this registry to', hostname, bad.address) as unknown as NodeJS.ErrnoException, '');
      if (options.all) return callback(null, addrs);
      callback(null, addrs[0]!.address, addrs[0]!.family);
    });
  };
}
