// Authentication on the wire (protocol §6). Every /v2 request passes `authorize` before its
// handler. Without credentials where they are needed, the answer is 401 with a Bearer challenge
// whose realm is this registry's own token endpoint on the request's own host:port (ollama
// refuses any other host). The token endpoint, GET /v2/token, accepts ollama's signed request
// (`<key>:<signature>` of `GET,<url>,<constant>`), Basic user:password (skopeo, docker), or
// nothing (an anonymous token, for OCI clients reading an anonymous-read registry).
//
// Refusals of a *registered* principal are 403 DENIED with a message that says what to do, and
// never contain "unauthorized"/"access denied": ollama replaces any push error containing those
// words with a generic message of its own.
import type { IncomingMessage } from 'node:http';
import type { App } from '../app.js';
import { ANONYMOUS, keyPrincipal, TS_WINDOW_MS, type Principal } from '../auth/decisions.js';
import { parseKeyBlob, verifyTokenRequest } from '../auth/sshkey.js';
import { ACTIONS, formatGrants, mayDo, type Action } from '../auth/store.js';
import type { Access, TokenClaims } from '../auth/tokens.js';
import type { Action as RuleAction } from '../auth/rules.js';
import type { RepoName } from '../registry/blobs/blob-access.js';
import { RegistryError } from '../errors.js';
import { isValidPart } from '../names.js';
import { absoluteUrl, origin, type Handler } from './context.js';
import { sendJson } from './respond.js';
import type { V2Route } from './routes.js';

export const TOKEN_PATH = '/v2/token';

/**
 * What a route needs, declared in the route table and checked by the gate before its handler:
 * an action on a repository, or the registry-wide ping/catalog. `blob`: a signed URL for this
 * blob also grants the pull. `rule`: the policy rule action checked after the rights (default:
 * pull for pulls, push for anything else; null when the handler applies the rules itself).
 */
export type Need =
  | { action: Action; repository: RepoName; blob?: string; rule?: RuleAction | null }
  | { action: 'ping' | 'catalog' };

/** The need of a /v2 route: reads pull, PUT pushes, DELETE deletes; every upload request is a push. */
export function needOf(route: V2Route, method: string): Need {
  switch (route.kind) {
    case 'ping':
    case 'catalog':
      return { action: route.kind };
    case 'uploads':
      return { action: 'push', repository: { namespace: route.namespace, model: route.model } };
    case 'blob':
    case 'manifest':
    case 'tags':
    case 'referrers': {
      const action: Action = method === 'PUT' ? 'push' : method === 'DELETE' ? 'delete' : 'pull';
      const blob = route.kind === 'blob' && (method === 'GET' || method === 'HEAD') ? route.digest : undefined;
      return { action, repository: { namespace: route.namespace, model: route.model }, ...(blob ? { blob } : {}) };
    }
  }
}

function scopeOf(n: Need): string | undefined {
  if (!('repository' in n)) return n.action === 'catalog' ? 'registry:catalog:*' : undefined;
  const actions = n.action === 'push' ? 'pull,push' : n.action;
  return `repository:${n.repository.namespace}/${n.repository.model}:${actions}`;
}

/** 401 with the Bearer challenge ollama and OCI tools follow (values quoted, nothing after the last). */
export function challenge(req: IncomingMessage, n: Need, message: string): RegistryError {
  const o = origin(req);
  const scope = scopeOf(n);
  // The host exactly as the client wrote it (ollama compares the realm's host:port as a string).
  const header = `Bearer realm="${o}${TOKEN_PATH}",service="${o.slice(o.indexOf('//') + 2)}"${scope ? `,scope="${scope}"` : ''}`;
  return new RegistryError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': header } });
}

function denied(message: string): RegistryError {
  return new RegistryError('DENIED', message);
}

interface Identity {
  principal: Principal;
  claims?: TokenClaims;
}

function decodeBasic(value: string): { name: string; password: string } | null {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) return null;
  const text = Buffer.from(value, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i > 0 ? { name: text.slice(0, i), password: text.slice(i + 1) } : null;
}

/** Who sent the request, from its Authorization header; null when there is none. */
async function identify(app: App, req: IncomingMessage, n: Need): Promise<Identity | null> {
  const h = req.headers.authorization;
  if (!h) return null;
  const sp = h.indexOf(' ');
  const scheme = (sp < 0 ? h : h.slice(0, sp)).toLowerCase();
  const value = sp < 0 ? '' : h.slice(sp + 1).trim();
  if (scheme === 'bearer') {
    const claims = app.auth.tokens.verify(value);
    if ('invalid' in claims) throw challenge(req, n, `${claims.invalid}; get a new token`);
    const principal = app.auth.fromSubject(claims.sub);
    if (!principal) throw challenge(req, n, 'the key or user this token was issued to is no longer registered');
    return { principal, claims };
  }
  if (scheme === 'basic') {
    const cred = decodeBasic(value);
    const principal = cred && (await app.auth.checkPassword(cred.name, cred.password, req.socket.remoteAddress));
    if (!principal) throw challenge(req, n, 'wrong user name or password');
    return { principal };
  }
  throw challenge(req, n, 'unsupported Authorization scheme: use a Bearer token from the token endpoint, or Basic with a user name and password');
}

function tokenCovers(claims: TokenClaims, namespace: string, model: string, action: Action): boolean {
  const name = `${namespace}/${model}`.toLowerCase();
  return claims.access.some((a) => a.type === 'repository' && a.name.toLowerCase() === name && a.actions.includes(action));
}

/**
 * The `keys add` command a message offers. Single quotes: ollama prints the JSON error body raw,
 * where double quotes would show as \" and break the pasted command. A key line without its
 * comment (type and base64) and a namespace never hold a quote.
 */
function keysAddCommand(key: string, namespace: string): string {
  return `ollama-registry keys add '${key}' --namespace ${namespace}`;
}

function deniedFor(app: App, p: Principal, action: Action, namespace: string, model: string): RegistryError {
  const grants = app.auth.grants(p) ?? [];
  let fix = `ask the registry's admin to grant ${action} in namespace ${namespace}`;
  if (p.kind === 'key') {
    const entry = app.auth.store.keyByFingerprint(p.id);
    if (entry) fix = `on the registry, an admin can run: ${keysAddCommand(entry.key, namespace)}${action === 'delete' ? ' --delete' : ''}`;
  }
  return denied(`${p.label} may not ${action} ${namespace}/${model} (it has: ${formatGrants(grants)}); ${fix}`);
}

async function decide(app: App, req: IncomingMessage, n: Need, url: URL): Promise<Principal> {
  if ('blob' in n && n.blob !== undefined && url.searchParams.has('sig')) {
    if (app.auth.tokens.verifyBlob(n.repository.namespace, n.repository.model, n.blob, url.searchParams.get('sig')!)) {
      return { kind: 'signed-url', id: 'signed-url', label: 'signed blob URL' };
    }
    if (!req.headers.authorization && !app.config.auth.anonymousRead) {
      throw challenge(req, n, 'this download link expired or is not for this blob; pull again to get a fresh one');
    }
  }
  const who = await identify(app, req, n);
  if (!('repository' in n) && n.action === 'ping') {
    // docker and skopeo learn where to log in only from a 401 here. With nobody registered
    // there is nothing to log in with, so an open registry answers 200 (health checks use this).
    if (who) return who.principal;
    if (app.config.auth.anonymousRead && app.auth.store.empty()) return ANONYMOUS;
    throw challenge(req, n, 'credentials required: get a token from the token endpoint (anonymous tokens are free when pulls are anonymous)');
  }
  if (!('repository' in n)) {
    if (app.config.auth.anonymousRead) return who?.principal ?? ANONYMOUS;
    if (!who) throw challenge(req, n, 'credentials required to list repositories');
    if (mayDo(app.auth.grants(who.principal) ?? [], '*', 'pull')) return who.principal;
    throw denied(`${who.principal.label} may not list every repository (that needs pull in namespace *)`);
  }
  const { action, repository: { namespace, model } } = n;
  if (!who) {
    if (action === 'pull' && app.config.auth.anonymousRead) return ANONYMOUS;
    throw challenge(req, n, action === 'pull'
      ? 'credentials required to pull from this registry'
      : `credentials required to ${action}: ollama signs in with its machine key, other tools with a user name and password`);
  }
  const p = who.principal;
  const allowedNow = app.auth.may(p, namespace, action);
  if (allowedNow && (!who.claims || who.claims.any || tokenCovers(who.claims, namespace, model, action) || (action === 'pull' && app.config.auth.anonymousRead))) return p;
  // An anonymous token (skopeo and docker fetch one when no credentials are given): log in.
  if (p.kind === 'anonymous') throw challenge(req, n, `${action} needs credentials: log in (skopeo --dest-creds USER:PASSWORD, docker login); ollama signs in with its machine key`);
  // A token for another scope (e.g. pull, now pushing): the client gets a new one.
  if (allowedNow) throw challenge(req, n, `this token does not cover ${action} on ${namespace}/${model}; get a new one`);
  throw deniedFor(app, p, action, namespace, model);
}

/**
 * The gate: the principal, or a 401/403 (logged for the audit trail); then the policy rules of
 * the repository. The pipeline runs it before any handler whose route declares a need.
 */
export async function authorize(app: App, req: IncomingMessage, n: Need, url: URL): Promise<Principal> {
  const p = await audited(app, req, () => decide(app, req, n, url));
  if ('repository' in n && n.rule !== null) app.policy.check(n.rule ?? (n.action === 'pull' ? 'pull' : 'push'), n.repository.namespace, n.repository.model);
  return p;
}

/**
 * For a request whose body names the repository (POST /api/pull): before any body byte is read,
 * the credentials and some `action` right, from the headers alone. The repository is checked
 * with `authorize` once the body is read.
 */
export async function authorizeBeforeBody(app: App, req: IncomingMessage, action: Action): Promise<void> {
  await audited(app, req, async () => {
    const n: Need = { action: 'ping' };
    const who = await identify(app, req, n);
    if (!who) throw challenge(req, n, `credentials required to ${action}: sign in with a user name and password, or a token`);
    if (!(app.auth.grants(who.principal) ?? []).some((g) => g.actions.includes(action))) {
      throw denied(`${who.principal.label} may not ${action} in any namespace; ask the registry's admin for a grant`);
    }
  });
}

async function audited<T>(app: App, req: IncomingMessage, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof RegistryError && (e.status === 401 || e.status === 403 || e.status === 429)) {
      const quiet = e.status === 401 && !req.headers.authorization;
      app.log[quiet ? 'info' : 'warn']({
        audit: 'refused', status: e.status, reason: e.message, method: req.method,
        path: (req.url ?? '').split('?')[0]!.slice(0, 300), ip: req.socket.remoteAddress,
      }, 'refused');
    }
    throw e;
  }
}

export interface Reader {
  /** Null when the request carried no credentials. */
  principal: Principal | null;
  /** Whether a pull of this repository would pass authentication (the policy rules are apart). */
  mayPull(namespace: string, model: string): boolean;
}

/**
 * For listings outside /v2 (the web page's API): who asks, and which repositories they may
 * pull, decided as a pull of each would be. Wrong credentials are a 401, as on /v2.
 */
export async function readerOf(app: App, req: IncomingMessage): Promise<Reader> {
  const who = await audited(app, req, () => identify(app, req, { action: 'catalog' }));
  const p = who?.principal ?? ANONYMOUS;
  const c = who?.claims;
  return {
    principal: who?.principal ?? null,
    mayPull: (namespace, model) => app.auth.may(p, namespace, 'pull')
      && (!c || c.any === true || app.config.auth.anonymousRead || tokenCovers(c, namespace, model, 'pull')),
  };
}

/** Where ollama should fetch a blob's ranges from: this URL, signed when pulls need credentials. */
export function blobLocation(app: App, req: IncomingMessage, route: { namespace: string; model: string; digest: string }): string {
  if (app.config.auth.anonymousRead) return absoluteUrl(req, req.url ?? '/');
  const sig = app.auth.tokens.signBlob(route.namespace, route.model, route.digest, app.config.auth.blobUrlTtlSeconds);
  return absoluteUrl(req, `${(req.url ?? '/').split('?')[0]}?sig=${sig}`);
}

// ---- the token endpoint ----

interface Scope {
  namespace: string;
  model: string;
  actions: Action[];
}

function parseScopes(url: URL): Scope[] {
  const out: Scope[] = [];
  for (const word of url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).slice(0, 20)) {
    const m = /^repository:([^/:]+)\/([^/:]+):([a-z*,]+)$/.exec(word);
    if (!m || !isValidPart('namespace', m[1]!) || !isValidPart('model', m[2]!)) continue;
    const asked = m[3]!.split(',');
    const actions = asked.includes('*') ? ACTIONS : ACTIONS.filter((a) => asked.includes(a));
    out.push({ namespace: m[1]!, model: m[2]!, actions });
  }
  return out;
}

/** ollama's signed token request; throws 403 with the reason and the fix. */
async function verifyOllamaRequest(app: App, req: IncomingMessage, url: URL, header: string, scopes: Scope[]): Promise<Principal> {
  const i = header.indexOf(':');
  const blob = header.slice(0, i);
  const key = parseKeyBlob(blob);
  if (!key) throw denied('the token request is not signed with an ed25519 key');
  // The URL exactly as sent; the scheme is whatever the client used (https behind a TLS proxy).
  const rest = `://${req.headers.host ?? ''}${req.url ?? ''}`;
  const first = new URL(origin(req)).protocol === 'https:' ? 'https' : 'http';
  const sig = header.slice(i + 1);
  if (![first, first === 'https' ? 'http' : 'https'].some((s) => verifyTokenRequest(key.key, `${s}${rest}`, sig))) {
    throw denied(`the signature of this token request does not match its URL (key ${key.fingerprint}); was the request changed on the way, e.g. by a proxy?`);
  }
  const ts = url.searchParams.get('ts') ?? '';
  if (!/^\d{1,12}$/.test(ts)) throw denied('the token request has no valid ts');
  const skew = Math.round((Number(ts) * 1000 - Date.now()) / 1000);
  if (Math.abs(skew) * 1000 > TS_WINDOW_MS) {
    throw denied(`the token request's time is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} the registry's clock ` +
      `(at most ${TS_WINDOW_MS / 1000} s allowed); fix the clock of one of the machines`);
  }
  let entry = app.auth.store.keyByBlob(blob);
  if (!entry) {
    // A key added a moment ago (`keys add` on this or another machine) counts at once: wait for the
    // re-read (at most one a second, so unknown keys cannot make the store busy) before refusing.
    await app.auth.store.refresh();
    entry = app.auth.store.keyByBlob(blob);
  }
  if (!entry) {
    const ns = scopes[0]?.namespace ?? 'NAMESPACE';
    const none = app.auth.store.keys().length === 0 ? ' (it has no keys yet)' : '';
    throw denied(`this machine's key ${key.fingerprint} is not registered on this registry${none}; to allow it, run on the registry: ${keysAddCommand(`ssh-ed25519 ${blob}`, ns)}`);
  }
  const nonce = url.searchParams.get('nonce') ?? '';
  if (nonce === '' || nonce.length > 128) throw denied('the token request has no nonce');
  if (!(await app.auth.nonces.use(`${blob}:${nonce}`))) throw denied('this signed token request was already used once (a replay); sign a new one');
  return keyPrincipal(entry.fingerprint, entry.comment);
}

export const tokenEndpoint: Handler = async ({ app, req, res, url }) => {
  const scopes = parseScopes(url);
  let p: Principal;
  try {
    const h = req.headers.authorization;
    if (!h) p = ANONYMOUS;
    else if (/^basic /i.test(h)) {
      const cred = decodeBasic(h.slice(6).trim());
      const found = cred && (await app.auth.checkPassword(cred.name, cred.password, req.socket.remoteAddress));
      if (!found) throw new RegistryError('UNAUTHORIZED', 'wrong user name or password', { headers: { 'WWW-Authenticate': 'Basic realm="ollama-registry"' } });
      p = found;
    } else if (/^[A-Za-z0-9+/=]{1,200}:[A-Za-z0-9+/=]{1,200}$/.test(h)) {
      p = await verifyOllamaRequest(app, req, url, h, scopes);
    } else {
      throw new RegistryError('UNAUTHORIZED', 'unsupported Authorization on the token endpoint: send ollama\'s signed request, or Basic user:password',
        { headers: { 'WWW-Authenticate': 'Basic realm="ollama-registry"' } });
    }
  } catch (e) {
    if (e instanceof RegistryError) {
      const scope = url.searchParams.getAll('scope').join(' ').slice(0, 300);
      app.log.warn({ audit: 'refused', status: e.status, reason: e.message, path: TOKEN_PATH, scope, ip: req.socket.remoteAddress }, 'refused');
    }
    throw e;
  }
  const access: Access[] = [];
  for (const s of scopes) {
    const actions = s.actions.filter((a) => app.auth.may(p, s.namespace, a));
    if (actions.length > 0) access.push({ type: 'repository', name: `${s.namespace}/${s.model}`, actions });
  }
  const ttl = app.config.auth.tokenTtlSeconds;
  // No scope at all (the web page's sign-in, a docker login): an identity token, good for what
  // the principal may do at the time of each request.
  const any = url.searchParams.getAll('scope').length === 0;
  const { token, claims } = app.auth.tokens.issue(app.auth.subject(p), access, ttl, any);
  app.log.info({ audit: 'token', who: p.label, access: access.map((a) => `${a.name}:${a.actions.join(',')}`), ip: req.socket.remoteAddress }, 'token issued');
  sendJson(res, 200, { token, access_token: token, expires_in: ttl, issued_at: new Date(claims.iat * 1000).toISOString() });
};
