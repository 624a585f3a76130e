// The `mirror:` settings: which hosts are intercepted, where the CA folder is, the DNS-mode
// listener and which CONNECT targets are tunnelled.
import os from 'node:os';
import path from 'node:path';
import { upstreamFromUrl, type UpstreamConfig } from '../upstream/config.js';

export interface MirrorConfig {
  /** Folder made by `ollama-registry ca init` (ca.pem, leaf.pem, leaf.key; ca.key may be elsewhere). */
  dir: string;
  /** Hosts answered as if we were them (TLS terminated here, served from the cache). */
  hosts: string[];
  /** DNS mode: also listen for TLS here (e.g. 0.0.0.0:443); proxy mode needs only the main port. */
  listen?: { host: string; port: number };
  /** CONNECT targets (host:port) tunnelled untouched, when online. */
  tunnel: string[];
  /** Open tunnels and intercepted connections at once, at most. */
  maxTunnels: number;
  /** A tunnel with no bytes either way for this long is closed. */
  tunnelIdleSeconds: number;
}

export const DEFAULT_MIRROR_HOSTS = ['registry.ollama.ai'];
/** Hosts known to serve ollama's registry API, for messages (hf.co: `ollama pull hf.co/user/repo`). */
export const KNOWN_MIRROR_HOSTS = ['registry.ollama.ai', 'hf.co'];
export const DEFAULT_TUNNEL = ['ollama.com:443'];

export function defaultMirrorDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'ollama-registry', 'mirror');
}

export function mirrorDefaults(dir: string): MirrorConfig {
  return { dir: path.resolve(dir), hosts: [...DEFAULT_MIRROR_HOSTS], tunnel: [...DEFAULT_TUNNEL], maxTunnels: 512, tunnelIdleSeconds: 300 };
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** A lower-case DNS name, or an error message. */
export function checkHostname(v: unknown): string {
  if (typeof v !== 'string' || !HOSTNAME.test(v.toLowerCase())) throw new Error(`expected a DNS name such as registry.ollama.ai, got ${JSON.stringify(v)}`);
  return v.toLowerCase();
}

export function checkTarget(v: unknown): string {
  const m = typeof v === 'string' ? /^([^:]+):(\d{1,5})$/.exec(v) : null;
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`expected host:port such as ollama.com:443, got ${JSON.stringify(v)}`);
  return `${checkHostname(m[1])}:${Number(m[2])}`;
}

export function listOf(raw: unknown): unknown[] {
  return Array.isArray(raw) ? raw : String(raw).split(',').map((s) => s.trim()).filter(Boolean);
}

/** Apply one `mirror.*` setting; false when the key is not one. Throws Error(message) on bad values. */
export function applyMirrorKey(current: MirrorConfig | undefined, key: string, raw: unknown, parseListen: (v: string) => { host: string; port: number }): MirrorConfig | undefined | false {
  if (!key.startsWith('mirror.')) return false;
  const m = current ?? mirrorDefaults(defaultMirrorDir());
  const on = (v: unknown) => v === true || (typeof v === 'string' && /^(true|yes|1|on)$/i.test(v));
  switch (key) {
    case 'mirror.enabled': return on(raw) ? m : undefined;
    case 'mirror.dir': return { ...m, dir: path.resolve(String(raw)) };
    case 'mirror.hosts': return { ...m, hosts: listOf(raw).map(checkHostname) };
    case 'mirror.listen': return { ...m, listen: parseListen(String(raw)) };
    case 'mirror.tunnel': return { ...m, tunnel: listOf(raw).map(checkTarget) };
    case 'mirror.maxTunnels': {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 1) throw new Error(`expected a whole number ≥ 1, got ${JSON.stringify(raw)}`);
      return { ...m, maxTunnels: n };
    }
    default: throw new Error('unknown setting (mirror.enabled, mirror.dir, mirror.hosts, mirror.listen, mirror.tunnel, mirror.maxTunnels)');
  }
}

/** The upstream a mirrored host uses: the one configured for its host folder, else https://host. */
function upstreamOf(host: string, upstreams: UpstreamConfig[]): UpstreamConfig | undefined {
  return upstreams.find((u) => u.host.toLowerCase() === host);
}

/**
 * The upstreams with one added for each mirrored host that has none (https://host, e.g. hf.co),
 * so that the cache can fill it and the relay reach it. Called once the config is read.
 */
export function withMirrorUpstreams(mirror: MirrorConfig | undefined, upstreams: UpstreamConfig[]): UpstreamConfig[] {
  if (!mirror) return upstreams;
  const missing = mirror.hosts.filter((h) => !upstreamOf(h, upstreams));
  return [...upstreams, ...missing.map((h) => upstreamFromUrl(`https://${h}`, 'mirror.hosts'))];
}
