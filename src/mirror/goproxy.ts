// Which proxy Go's net/http (and so ollama) uses for a URL, from the environment, as
// golang.org/x/net/http/httpproxy decides it: HTTPS_PROXY/https_proxy for https URLs,
// HTTP_PROXY/http_proxy for http, NO_PROXY exceptions, loopback never proxied.
import { isIP } from 'node:net';

export interface ProxyDecision {
  proxy: string | null;
  why: string;
}

function pick(env: NodeJS.ProcessEnv, upper: string): string {
  return env[upper] || env[upper.toLowerCase()] || '';
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, bitsText] = cidr.split('/');
  if (!net || isIP(net) !== 4 || isIP(ip) !== 4) return false;
  const bits = Number(bitsText);
  const n = (s: string) => s.split('.').reduce((a, p) => (a << 8) + Number(p), 0) >>> 0;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((n(ip) & mask) >>> 0) === ((n(net) & mask) >>> 0);
}

export function goProxyFor(target: string, env: NodeJS.ProcessEnv = process.env): ProxyDecision {
  const u = new URL(target);
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  const name = u.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY';
  const raw = pick(env, name);
  if (!raw) return { proxy: null, why: `${name} is not set: ${host} is reached directly` };
  if (host === 'localhost' || (isIP(host) && /^(127\.|::1$)/.test(host))) return { proxy: null, why: `${host} is loopback: never proxied` };
  for (const entry of pick(env, 'NO_PROXY').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (entry === '*') return { proxy: null, why: 'NO_PROXY=* turns the proxy off for everything' };
    if (entry.includes('/')) {
      if (inCidr(host, entry)) return { proxy: null, why: `NO_PROXY entry ${entry} covers ${host}` };
      continue;
    }
    const [eHost, ePort] = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(entry)?.slice(1) ?? [entry];
    if (ePort && ePort !== port) continue;
    if (isIP(eHost!)) {
      if (eHost === host) return { proxy: null, why: `NO_PROXY entry ${entry} is ${host}` };
      continue;
    }
    const bare = eHost!.replace(/^\*?\./, '');
    const subOnly = eHost!.startsWith('.') || eHost!.startsWith('*.');
    if ((!subOnly && host === bare) || host.endsWith(`.${bare}`)) return { proxy: null, why: `NO_PROXY entry ${entry} covers ${host}` };
  }
  const proxy = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  return { proxy, why: `${name}=${raw}` };
}
