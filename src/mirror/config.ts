// The `mirror:` settings: which hosts are intercepted, where the CA folder is, the DNS-mode
// listener and which CONNECT targets are tunnelled.
import os from 'node:os';
import path from 'node:path';
import { upstreamFromUrl, type UpstreamConfig } from '../upstream/config.js';
import { bool, filePath, Invalid, leaf, list, listen, setting, wholeNumber, type Setting } from '../config-values.js';
import type { Config } from '../config.js';

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
  if (typeof v !== 'string' || !HOSTNAME.test(v.toLowerCase())) throw new Invalid(`expected a DNS name such as registry.ollama.ai, got ${JSON.stringify(v)}`);
  return v.toLowerCase();
}

export function checkTarget(v: unknown): string {
  const m = typeof v === 'string' ? /^([^:]+):(\d{1,5})$/.exec(v) : null;
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Invalid(`expected host:port such as ollama.com:443, got ${JSON.stringify(v)}`);
  return `${checkHostname(m[1])}:${Number(m[2])}`;
}

export function listOf(raw: unknown): unknown[] {
  return Array.isArray(raw) ? raw : String(raw).split(',').map((s) => s.trim()).filter(Boolean);
}

/** The mirror settings of `cfg`, made with the defaults when a first mirror.* key is set. */
function mirrorOf(cfg: Config): MirrorConfig {
  cfg.mirror ??= mirrorDefaults(defaultMirrorDir());
  return cfg.mirror;
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

/**
 * The `mirror.*` rows of the settings table. Any of them turns the mirror on, unless
 * mirror.enabled is false in the end (config.ts looks at that after every source).
 */
export const MIRROR_SETTINGS: Setting[] = [
  setting({ key: 'mirror.enabled', env: 'OLLAMA_REGISTRY_MIRROR', flag: '`--mirror [DIR]` (`serve`)', defaultDoc: '`false`', schema: bool, set: (c, on) => { if (on) mirrorOf(c); },
    doc: 'the transparent mirror (see [The transparent mirror](#the-transparent-mirror-ollama-pull-gemma22b-unchanged))' }),
  setting({ key: 'mirror.dir', env: 'OLLAMA_REGISTRY_MIRROR_DIR', flag: '`--mirror DIR`', defaultDoc: '`~/.config/ollama-registry/mirror`', schema: filePath, set: (c, v) => { mirrorOf(c).dir = v; },
    doc: 'the CA folder made by `ca init`' }),
  setting({ key: 'mirror.hosts', env: 'OLLAMA_REGISTRY_MIRROR_HOSTS', defaultDoc: `\`[${DEFAULT_MIRROR_HOSTS.join(', ')}]\``,
    schema: leaf((raw) => list(raw).map(checkHostname)), set: (c, v) => { mirrorOf(c).hosts = v; },
    doc: 'hosts answered as if the mirror were them (`hf.co` too, if wanted)' }),
  setting({ key: 'mirror.listen', env: 'OLLAMA_REGISTRY_MIRROR_LISTEN', flag: '`--mirror-listen`', defaultDoc: 'none (proxy mode only)', schema: listen, set: (c, v) => { mirrorOf(c).listen = v; },
    doc: 'DNS mode: also listen for TLS here, e.g. `0.0.0.0:443`' }),
  setting({ key: 'mirror.tunnel', env: 'OLLAMA_REGISTRY_MIRROR_TUNNEL', defaultDoc: `\`[${DEFAULT_TUNNEL.join(', ')}]\``,
    schema: leaf((raw) => list(raw).map(checkTarget)), set: (c, v) => { mirrorOf(c).tunnel = v; },
    doc: 'CONNECT targets (host:port) tunnelled untouched, when online' }),
  setting({ key: 'mirror.maxTunnels', defaultDoc: '`512`', schema: wholeNumber(1), set: (c, v) => { mirrorOf(c).maxTunnels = v; },
    doc: 'open tunnels and intercepted connections at once' }),
];
