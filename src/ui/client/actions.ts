// Writes, shown only when the server reports the feature (see src/ui/hooks.ts): sign-in,
// prefetch with live progress, and deleting a tag. The contracts are in README, "The web catalog".
import { authHeaders, currentSession, el, errorOf, formatBytes, onSessionChange, setSession, type Features, type ModelSummary } from './util.js';

function basic(user: string, pass: string): string {
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

let accountFeatures: Features | null = null;

/** The header's sign-in / sign-out control. */
export function renderAccount(features: Features): void {
  accountFeatures = features;
  const slot = document.getElementById('account');
  if (!slot) return;
  if (!features.signIn) {
    slot.replaceChildren();
    return;
  }
  const session = currentSession();
  if (session) {
    const out = el('button', { type: 'button', class: 'link', id: 'sign-out' }, 'Sign out');
    out.addEventListener('click', () => {
      setSession(null);
      renderAccount(features);
    });
    slot.replaceChildren(el('span', { class: 'muted' }, `Signed in as ${session.user} `), out);
  } else {
    const btn = el('button', { type: 'button', class: 'link', id: 'sign-in' }, 'Sign in');
    btn.addEventListener('click', () => void signIn());
    slot.replaceChildren(btn);
  }
}

/** Ask for credentials in a modal dialog; resolves true once signed in. */
export function signIn(reason?: string): Promise<boolean> {
  const f = accountFeatures?.signIn;
  if (!f) return Promise.resolve(false);
  return new Promise((resolve) => {
    const user = el('input', { id: 'user', name: 'username', autocomplete: 'username', required: true });
    const pass = el('input', { id: 'pass', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const msg = el('p', { class: 'error', role: 'alert', hidden: true });
    const cancel = el('button', { type: 'button' }, 'Cancel');
    const form = el('form', { method: 'dialog' },
      el('h2', null, 'Sign in'), reason ? el('p', null, reason) : null,
      el('label', { for: 'user' }, 'User'), user, el('label', { for: 'pass' }, 'Password'), pass, msg,
      el('div', { class: 'buttons' }, el('button', { type: 'submit', class: 'primary' }, 'Sign in'), cancel));
    const dialog = el('dialog', { class: 'signin', 'aria-label': 'Sign in' }, form);
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      dialog.close();
      dialog.remove();
      if (accountFeatures) renderAccount(accountFeatures);
      resolve(ok);
    };
    cancel.addEventListener('click', () => finish(false));
    dialog.addEventListener('close', () => finish(!!currentSession()));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      msg.hidden = true;
      try {
        // credentials: 'omit' keeps the browser from answering the token endpoint's Basic
        // challenge with its own password prompt; the Authorization header is still sent.
        const res = await fetch(f.tokenUrl, { credentials: 'omit', headers: { Authorization: basic(user.value, pass.value), Accept: 'application/json' } });
        if (!res.ok) throw await errorOf(res);
        const body = await res.json() as { token?: string; access_token?: string };
        const token = body.token ?? body.access_token;
        if (!token) throw new Error('the registry answered without a token');
        setSession({ user: user.value, token });
        finish(true);
      } catch (err) {
        msg.textContent = `Sign-in failed: ${(err as Error).message}`;
        msg.hidden = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    user.focus();
  });
}

/** Signed in already, or after the sign-in dialog; false when the user cancels. */
async function ensureSignedIn(reason: string): Promise<boolean> {
  return !!currentSession() || await signIn(reason);
}

/** fetch with the session's token; on 401/403 offer to sign in (again) once and retry. */
async function authedFetch(url: string, init: RequestInit): Promise<Response> {
  const go = () => fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...authHeaders() } });
  let res = await go();
  if ((res.status === 401 || res.status === 403) && accountFeatures?.signIn) {
    const why = (await errorOf(res.clone())).message;
    if (await signIn(res.status === 403 ? `Your account may not do this: ${why}` : `Please sign in again (${why}).`)) res = await go();
  }
  return res;
}

/** Deleting a tag: confirm, DELETE the feature's URL, then `after()`. */
export function deleteButton(features: Features, m: ModelSummary, tag: string, after: () => void): HTMLElement | null {
  const f = features.delete;
  if (!f) return null;
  const msg = el('span', { class: 'error', role: 'alert' });
  const btn = el('button', { type: 'button', class: 'danger', id: 'delete-tag' }, `Delete tag ${tag}`);
  btn.addEventListener('click', async () => {
    msg.textContent = '';
    if (!await ensureSignedIn('Deleting a tag needs an account with the delete right.')) {
      msg.textContent = 'Not deleted: sign in with an account that may delete first.';
      return;
    }
    // The registry deletes a name:tag in every host folder that holds it (as DELETE on /v2 does).
    const also = m.tags.find((t) => t.tag === tag)?.shadowedBy ?? null;
    if (!confirm(`Delete ${m.namespace}/${m.model}:${tag}? It is removed from every host folder that holds it${also ? ` (also ${also})` : ''}; its blobs stay until a garbage collection.`)) return;
    const fill: Record<string, string> = { host: m.host, namespace: m.namespace, model: m.model, tag };
    const url = f.url.replace(/\{(host|namespace|model|tag)\}/g, (_, k: string) => encodeURIComponent(fill[k]!));
    btn.disabled = true;
    try {
      const res = await authedFetch(url, { method: 'DELETE' });
      if (!res.ok) throw await errorOf(res);
      after();
    } catch (err) {
      msg.textContent = `Not deleted: ${(err as Error).message}`;
    } finally {
      btn.disabled = false;
    }
  });
  return el('p', { class: 'actions' }, btn, ' ', msg);
}

interface Progress { status?: string; digest?: string; total?: number; completed?: number; error?: string }

/** The prefetch form: streams ollama's /api/pull-shaped NDJSON into per-blob and total bars. */
let prefetchForm: HTMLElement | null = null;

export function renderPrefetch(features: Features, done: () => void): HTMLElement | null {
  const f = features.prefetch;
  if (!f) return null;
  // One form for the page's life, so its progress and result survive the catalog's refresh.
  if (prefetchForm) return prefetchForm;
  const name = el('input', { id: 'prefetch-name', placeholder: 'gemma2:2b or hf.co/user/repo:Q4_K_M', 'aria-label': 'Model to prefetch', autocomplete: 'off', spellcheck: 'false', required: true });
  const go = el('button', { type: 'submit', class: 'primary' }, 'Prefetch');
  const state = el('p', { class: 'pf-status', role: 'status' });
  const total = el('progress', { id: 'pf-total', max: 1, value: 0, hidden: true });
  const totalText = el('p', { class: 'pf-total muted', 'aria-live': 'off' });
  const blobs = el('ul', { class: 'pf-blobs' });
  const hint = el('p', { class: 'note', id: 'pf-hint' }, 'Sign in with an account that may push to start a prefetch.');
  const showHint = () => { hint.hidden = !!currentSession(); };
  showHint();
  onSessionChange(showHint);
  const form = el('form', { class: 'prefetch', 'aria-label': 'Prefetch a model from an upstream' },
    el('label', { for: 'prefetch-name' }, 'Prefetch from upstream'), hint, el('div', { class: 'row' }, name, go), state, total, totalText, blobs);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    state.classList.remove('error');
    if (!await ensureSignedIn('Prefetching needs an account with the push right.')) {
      state.textContent = 'Not started: sign in with an account that may push first.';
      state.classList.add('error');
      return;
    }
    go.disabled = true;
    blobs.replaceChildren();
    total.hidden = true;
    totalText.textContent = '';
    state.textContent = 'Starting…';
    const bars = new Map<string, { bar: HTMLProgressElement; text: HTMLElement; total: number; completed: number }>();
    const samples: Array<[number, number]> = [];
    let finished = false;
    const show = (p: Progress) => {
      if (p.error) throw new Error(p.error);
      if (p.status) state.textContent = p.status;
      if (p.digest && typeof p.total === 'number') {
        let b = bars.get(p.digest);
        if (!b) {
          b = { bar: el('progress', { max: Math.max(p.total, 1), value: 0, 'aria-label': p.digest.slice(7, 19) }), text: el('span', { class: 'muted' }), total: p.total, completed: 0 };
          bars.set(p.digest, b);
          blobs.append(el('li', null, el('code', null, p.digest.slice(7, 19)), b.bar, b.text));
        }
        b.total = p.total;
        b.completed = p.completed ?? 0;
        b.bar.max = Math.max(b.total, 1);
        b.bar.value = b.completed;
        b.text.textContent = `${formatBytes(b.completed)} / ${formatBytes(b.total)}`;
      }
      let sum = 0;
      let got = 0;
      for (const b of bars.values()) {
        sum += b.total;
        got += b.completed;
      }
      if (sum > 0) {
        const now = performance.now();
        samples.push([now, got]);
        while (samples.length > 2 && now - samples[0]![0] > 3000) samples.shift();
        const [t0, g0] = samples[0]!;
        const rate = now > t0 ? ((got - g0) * 1000) / (now - t0) : 0;
        total.hidden = false;
        total.max = sum;
        total.value = got;
        totalText.textContent = `${formatBytes(got)} of ${formatBytes(sum)} (${Math.floor((got / sum) * 100)}%)${rate > 0 ? ` · ${formatBytes(rate)}/s` : ''}`;
      }
      if (p.status === 'success') finished = true;
    };
    try {
      const res = await authedFetch(f.url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: name.value.trim() }) });
      if (!res.ok || !res.body) throw await errorOf(res);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done: end } = await reader.read();
        if (value) buf += value;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) show(JSON.parse(line) as Progress);
        }
        if (end) break;
      }
      if (buf.trim()) show(JSON.parse(buf) as Progress);
      if (!finished) throw new Error('the stream ended before the pull finished');
      state.textContent = `Done: ${name.value.trim()} is in the registry.`;
      done();
    } catch (err) {
      state.textContent = `Prefetch failed: ${(err as Error).message}`;
      state.classList.add('error');
    } finally {
      go.disabled = false;
    }
  });
  prefetchForm = form;
  return form;
}
