// Shared by the page's modules: the API's types, DOM building (text only: model data never
// reaches innerHTML), formatting, and the exact commands users copy.

import type { ArtifactKind, ModelDetails, ModelSummary } from './api.js';

export type { LayerInfo, ModelSummary, Source, TagSummary, TextLayer } from './api.js';

export interface Features {
  prefetch: false | { url: string };
  delete: false | { url: string };
  signIn: false | { tokenUrl: string };
  mirror?: { setupUrl: string };
}

export interface CatalogResponse {
  features: Features;
  /** Only the models the requester may pull. */
  models: ModelSummary[];
  /** Reads need credentials and none were sent: the page asks to sign in. */
  signInToRead: boolean;
  disk: { bytes: number; blobs: number; free: number | null; total: number | null };
}

export interface DetailsResponse extends ModelDetails {
  features: Features;
}

type Child = Node | string | number | null | undefined | false;

/** An element with attributes and children; strings become text nodes, never markup. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, string | number | boolean | null | undefined> | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (k.startsWith('on')) throw new Error(`el: use addEventListener, not ${k}`);
    if (v === true) e.setAttribute(k, '');
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === 'object' ? c : String(c));
  }
  return e;
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The registry's one-line error message from a failed response. */
export async function errorOf(res: Response): Promise<ApiError> {
  let msg = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json() as { errors?: Array<{ message?: string }>; error?: string };
    msg = body.errors?.[0]?.message ?? body.error ?? msg;
  } catch { /* keep the status line */ }
  return new ApiError(res.status, msg);
}

/** Who is signed in; kept in memory only (a reload signs out). */
let session: { user: string; token: string } | null = null;
const sessionListeners: Array<() => void> = [];

export const currentSession = () => session;

export function setSession(s: { user: string; token: string } | null): void {
  session = s;
  for (const f of sessionListeners) f();
}

export function onSessionChange(f: () => void): void {
  sessionListeners.push(f);
}

export function authHeaders(): Record<string, string> {
  return session ? { Authorization: `Bearer ${session.token}` } : {};
}

/** GET with the session's token: listings show what the signed-in user may pull. */
export async function getJson<T>(url: string): Promise<T> {
  const go = () => fetch(url, { headers: { Accept: 'application/json', ...authHeaders() } });
  let res = await go();
  if (res.status === 401 && session) {
    // The token expired (or the user was removed): carry on signed out; the view being
    // built shows the sign-in button again.
    session = null;
    res = await go();
  }
  if (!res.ok) throw await errorOf(res);
  return await res.json() as T;
}

export { formatBytes } from './bytes.js';

const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

export function formatAgo(iso: string, now = Date.now()): string {
  const s = (Date.parse(iso) - now) / 1000;
  const steps: Array<[number, Intl.RelativeTimeFormatUnit]> = [[60, 'second'], [3600, 'minute'], [86400, 'hour'], [86400 * 7, 'day'], [86400 * 30, 'week'], [86400 * 365, 'month']];
  let unit: Intl.RelativeTimeFormatUnit = 'year';
  let div = 86400 * 365;
  const prev = [1, 60, 3600, 86400, 86400 * 7, 86400 * 30];
  for (let i = 0; i < steps.length; i++) {
    if (Math.abs(s) < steps[i]![0]) {
      unit = steps[i]![1];
      div = prev[i]!;
      break;
    }
  }
  return rtf.format(Math.round(s / div), unit);
}

export function timeEl(iso: string): HTMLTimeElement {
  return el('time', { datetime: iso, title: new Date(iso).toLocaleString() }, formatAgo(iso));
}

export interface Commands {
  unix: { pull: string; cp: string };
  windows: { pull: string; cp: string };
  /** Why the Windows commands differ, when they do. */
  windowsNote: string | null;
  /** A host ollama cannot use in a name at all (IPv6 literal). */
  hostNote: string | null;
}

/** The exact commands for a tag, for the host the browser reached the registry at. */
export function commands(loc: { host: string; hostname: string; port: string; protocol: string }, ns: string, model: string, tag: string): Commands {
  const https = loc.protocol === 'https:';
  const pull = (host: string) => `ollama pull ${https ? '' : '--insecure '}${host}/${ns}/${model}:${tag}`;
  const cp = (host: string) => `ollama cp ${host}/${ns}/${model}:${tag} ${model}:${tag}`;
  const winHost = loc.hostname;
  const port = https ? '443' : '80';
  return {
    unix: { pull: pull(loc.host), cp: cp(loc.host) },
    windows: { pull: pull(winHost), cp: cp(winHost) },
    windowsNote: loc.port === '' ? null
      : `Windows cannot use a name with a port: ollama makes the host a folder name, and ":" is not allowed in Windows folder names. ` +
        `Serve the registry on port ${port} (ollama-registry serve --listen 0.0.0.0:${port}${https ? ' with --tls-cert/--tls-key' : ''}); these commands are for that address.`,
    hostNote: loc.hostname.startsWith('[')
      ? 'ollama cannot use an IPv6 address in a model name: open this page by a host name or an IPv4 address.' : null,
  };
}

/** What each kind of artifact is called on the page (ollama models need no label). */
export const KIND_LABELS: Record<ArtifactKind, string | null> = {
  'ollama': null, 'ollama-list': 'ollama model list', 'docker-model': 'docker model', 'modelpack': 'ModelPack model', 'image': 'container image',
};

/**
 * Pull commands for what is not an ollama model: `docker model pull` for docker model artifacts
 * and ModelPack models, `docker pull` / `podman pull` for container images. Plain HTTP needs the
 * registry in docker's insecure-registries; podman says so per command.
 */
export function otherCommands(loc: { host: string; protocol: string }, ns: string, model: string, tag: string, kind: ArtifactKind): { lines: Array<[string, string]>; note: string | null } {
  const name = `${loc.host}/${ns}/${model}:${tag}`;
  const https = loc.protocol === 'https:';
  const note = https ? null : `This registry speaks plain HTTP: add ${loc.host} to "insecure-registries" in docker's daemon.json first.`;
  if (kind === 'image') return { lines: [['docker', `docker pull ${name}`], ['podman', `podman pull ${https ? '' : '--tls-verify=false '}${name}`]], note };
  return { lines: [['Pull', `docker model pull ${name}`]], note };
}

/** Copy text; the Clipboard API needs HTTPS or localhost, so plain-HTTP LAN pages fall back to a selection copy. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (window.isSecureContext && navigator.clipboard) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* fall back */ }
  const ta = el('textarea', { readonly: true, class: 'offscreen', 'aria-hidden': 'true' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch { /* unsupported */ }
  ta.remove();
  return ok;
}

/** A code line with a button that copies exactly its text (the text is also in data-copy). */
export function copyLine(label: string, text: string): HTMLElement {
  const btn = el('button', { type: 'button', class: 'copy', 'data-copy': text, 'aria-label': `Copy: ${text}` }, 'Copy');
  btn.addEventListener('click', async () => {
    const ok = await copyText(text);
    btn.textContent = ok ? 'Copied' : 'Select and copy';
    btn.classList.toggle('done', ok);
    setTimeout(() => {
      btn.textContent = 'Copy';
      btn.classList.remove('done');
    }, 1500);
  });
  return el('div', { class: 'cmd' }, el('span', { class: 'cmd-label' }, label), el('code', null, text), btn);
}

export const modelHash = (m: { host: string; namespace: string; model: string }, tag?: string) =>
  `#/m/${[m.host, m.namespace, m.model, ...(tag ? [tag] : [])].map(encodeURIComponent).join('/')}`;

/** Where "All models" goes back to (the catalog with the filter last used), and a message for the next view. */
export const nav = { catalog: '#/', flash: '' };

/** Go to a hash, rendering it again when the page is already there. */
export function go(hash: string): void {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
