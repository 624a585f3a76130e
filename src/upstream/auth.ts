// Signing in to an upstream after it answers 401. A Bearer challenge whose realm is on the
// upstream's own host is answered as ollama answers it (protocol §6, ollama server/auth.go):
// a token request signed with the registry's own ed25519 key; when the upstream refuses the key
// an anonymous token is tried (token servers that are not ollama's may reject the header).
// A realm on another host (docker-style token servers) gets Basic credentials when configured,
// else an anonymous request: the key's signature is sent to the upstream's own host only, as
// ollama does since CVE-2025-51471. A Basic challenge (htpasswd) is answered with the configured
// user and password on every later request. Tokens are cached per repository scope until expiry.
import { Coalesce } from '../coalesce.js';
import { randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { undici } from './undici.js';
import { printable, readSmall, UpstreamError, USER_AGENT, withReason } from './common.js';
import type { OutboundGuard } from './guard.js';
import type { UpstreamConfig } from './config.js';
import { goEncodeQuery, loadOwnKey, readOwnKey, signTokenUrl, type KeySource, type OwnKey } from './key.js';

/** Parse `Bearer realm="…",service="…",scope="…"` (quoted or not). */
export function parseChallenge(v: string | undefined): Record<string, string> | null {
  if (!v || !/^bearer\s/i.test(v)) return null;
  const out: Record<string, string> = {};
  for (const m of v.slice(7).matchAll(/([A-Za-z]+)=(?:"([^"]*)"|([^,\s]*))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out.realm ? out : null;
}

type Way = 'key' | 'basic' | 'anonymous';

/** How a sign-in went: what got the token, and what was refused before it. */
export interface SignIn {
  with: string;
  refusals: string[];
}

const KEY_HINT = '; to allow this registry there, register its public key (printed by: ollama-registry keys own)';

export class UpstreamAuth {
  private tokens = new Map<string, { token: string; expires: number }>();
  private signingIn = new Coalesce<string, SignIn>();
  /** The upstream asked for Basic on its API itself (htpasswd): send it with every request. */
  private basicEverywhere = false;
  private key?: OwnKey;

  constructor(private readonly up: { name: string; base: URL; config: UpstreamConfig; describe(): string },
    private readonly dispatcher: Dispatcher, private readonly guard: OutboundGuard, private readonly keySource?: KeySource) {}

  /** A configured key that cannot be read is a configuration error: say so at start-up. */
  checkKey(): void {
    if (this.keySource && !this.keySource.create) this.key = readOwnKey(this.keySource.file, this.keySource.setting);
  }

  /** Read (or, the registry's own, make) the key before signing in with it. */
  private async loadKey(): Promise<void> {
    if (this.key) return;
    const { key, created } = await loadOwnKey(this.keySource!);
    if (created) this.keySource!.onCreate?.(key);
    this.key = key;
  }

  /** The key, once loadKey() has it. */
  private ownKey(): OwnKey {
    if (!this.key) throw new Error('the key was not loaded before use');
    return this.key;
  }

  private basicValue(): string {
    return `Basic ${Buffer.from(`${this.up.config.username}:${this.up.config.password ?? ''}`).toString('base64')}`;
  }

  scopeOf(pathname: string): string {
    const m = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(pathname.slice(this.up.base.pathname.length - 1));
    return m ? `repository:${m[1]}:pull` : '';
  }

  /** The Authorization for a request to the upstream's own host, if it has one by now. */
  authorization(pathname: string): string | undefined {
    if (this.basicEverywhere) return this.basicValue();
    const t = this.tokens.get(this.scopeOf(pathname));
    return t && t.expires > Date.now() ? `Bearer ${t.token}` : undefined;
  }

  private fail(message: string, extra: { status?: number; body?: Buffer } = {}): UpstreamError {
    return new UpstreamError(this.up.name, 'auth', `${this.up.describe()} ${message}`, extra);
  }

  /**
   * After a 401: get credentials so that the request can be repeated once. Resolves with how it
   * signed in (for the message if the repeat is refused too); concurrent 401s share one sign-in.
   */
  answer(challenge: string | undefined, pathname: string): Promise<SignIn> {
    const scope = this.scopeOf(pathname);
    return this.signingIn.run(scope, () => this.signIn(challenge, scope));
  }

  private async signIn(challenge: string | undefined, pathScope: string): Promise<SignIn> {
    const { username } = this.up.config;
    const ch = parseChallenge(challenge);
    if (!ch) {
      if (/^basic\b/i.test(challenge ?? '')) {
        if (!username) throw this.fail('asks for a user name and password (Basic); set username and password for it in the upstreams config');
        this.basicEverywhere = true;
        return { with: `user ${username}`, refusals: [] };
      }
      throw this.fail(`answered 401 with no challenge this registry can answer${challenge ? ` (${printable(challenge, 100)})` : ''}`);
    }
    let realm: URL;
    try {
      realm = new URL(ch.realm!);
    } catch {
      realm = new URL('invalid:');
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw this.fail(`asked for a token from an unusable realm (${realm.protocol.slice(0, 20) || 'not a URL'})`);
    // The realm is a URL of the upstream's choosing: the same rules as a redirect.
    await this.guard.check(realm, this.up.base, 'named a token realm at');
    const scope = ch.scope || pathScope;
    const sameHost = realm.host === this.up.base.host;
    const ways: Way[] = username ? ['basic'] : this.keySource && sameHost ? ['key', 'anonymous'] : ['anonymous'];
    if (ways[0] === 'key') {
      try {
        await this.loadKey();
      } catch (e) {
        throw this.fail(`cannot sign in: ${(e as Error).message}`);
      }
    }
    const refusals: string[] = [];
    for (const way of ways) {
      const r = await this.tokenRequest(way, realm, ch.service ?? '', scope);
      if ('token' in r) {
        this.tokens.set(pathScope, { token: r.token, expires: Date.now() + r.ttlMs });
        return { with: this.label(way), refusals };
      }
      refusals.push(`${this.label(way)} (${r.refused})`);
    }
    const hint = ways.includes('key') ? KEY_HINT : username ? '; check the username and password configured for it' : '';
    throw this.fail(`refused ${refusals.join(' and ')}: no token for ${scope || 'this request'}${hint}`);
  }

  private label(way: Way): string {
    if (way === 'key') return `this registry's key ${this.ownKey().fingerprint}`;
    if (way === 'basic') return `user ${this.up.config.username}`;
    return 'an anonymous token';
  }

  /** One token request; a refusal (4xx) resolves with its reason, anything else throws. */
  private async tokenRequest(way: Way, realm: URL, service: string, scope: string): Promise<{ token: string; ttlMs: number } | { refused: string }> {
    const h: Record<string, string> = { 'user-agent': USER_AGENT };
    let url: string;
    if (way === 'key') {
      // Exactly ollama's URL: the realm's own query, service, each scope word, ts, nonce; Go-encoded.
      const key = this.ownKey();
      const pairs: Array<[string, string]> = [...realm.searchParams.entries()];
      pairs.push(['service', service], ...scope.split(' ').map((s): [string, string] => ['scope', s]));
      pairs.push(['ts', String(Math.floor(Date.now() / 1000))], ['nonce', randomBytes(16).toString('base64url')]);
      url = `${realm.origin}${realm.pathname}?${goEncodeQuery(pairs)}`;
      h.authorization = signTokenUrl(key, url);
    } else {
      const u = new URL(realm.href);
      if (service) u.searchParams.set('service', service);
      if (scope) u.searchParams.set('scope', scope);
      url = u.href;
      if (way === 'basic') h.authorization = this.basicValue();
    }
    // A network error propagates as it is: the caller retries it like any other.
    const res = await undici().request(url, { method: 'GET', headers: h, dispatcher: this.dispatcher });
    const body = await readSmall({ body: res.body });
    if (res.statusCode >= 400 && res.statusCode < 500) return { refused: `${res.statusCode}${withReason(body)}` };
    if (res.statusCode < 200 || res.statusCode >= 300) {
      throw new UpstreamError(this.up.name, 'status', `${this.up.describe()} token endpoint answered ${res.statusCode}${withReason(body)}`, { status: res.statusCode });
    }
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new UpstreamError(this.up.name, 'invalid', `${this.up.describe()} token endpoint answered something that is not JSON`);
    }
    const token = parsed.token ?? parsed.access_token;
    if (!token || typeof token !== 'string') throw new UpstreamError(this.up.name, 'invalid', `${this.up.describe()} token endpoint answered no token`);
    // Renewed a little before it expires there (clocks and transit), never after.
    const life = Number(parsed.expires_in) > 0 ? Number(parsed.expires_in) : 60;
    return { token, ttlMs: Math.max(1, life - Math.min(10, life / 4)) * 1000 };
  }

  /** The request was refused even after signing in (or with a 403): say what was tried. */
  refused(method: string, pathname: string, status: number, body: Buffer, signedIn?: SignIn): UpstreamError {
    const answer = `${status}${withReason(body)}`;
    // The key was refused and a fallback token did not help: the key refusal is the news.
    if (signedIn?.refusals.length) {
      const hint = signedIn.refusals.some((r) => r.includes("registry's key")) ? KEY_HINT : '';
      return this.fail(`refused ${signedIn.refusals.join(' and ')}; ${signedIn.with} does not get ${method} ${pathname} either (${status})${hint}`, { status, body });
    }
    return this.fail(`refused ${method} ${pathname} (${answer})${signedIn ? `, after signing in with ${signedIn.with}` : ''}`, { status, body });
  }
}
