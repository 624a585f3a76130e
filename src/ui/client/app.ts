// The web catalog: a hash-routed page (#/ the catalog, #/m/<host>/<ns>/<model>/<tag> a model)
// reading only /api/ui/*. Rows are built once per load; filtering and sorting only hide and
// reorder them, so 500 models stay instant.
import { renderAccount, renderPrefetch } from './actions.js';
import { renderModel } from './model.js';
import { ApiError, el, formatAgo, formatBytes, getJson, KIND_LABELS, modelHash, nav, onSessionChange, type CatalogResponse, type ModelSummary } from './util.js';

type SortKey = 'name' | 'size' | 'date';

interface Row {
  model: ModelSummary;
  tr: HTMLLIElement;
  /** Lower-cased fields the filter matches, separated by SEP. */
  text: string;
  name: string;
}

const main = document.getElementById('main') as HTMLElement;
const status = () => document.getElementById('status');

function setStatus(text: string, isError = false): void {
  let s = status();
  if (!s) {
    s = el('p', { id: 'status', class: 'status', role: 'status' });
    main.prepend(s);
  }
  s.textContent = text;
  s.classList.toggle('error', isError);
  s.hidden = text === '';
}

function distinct(values: Array<string | null>): string {
  return [...new Set(values.filter((v): v is string => !!v))].join(', ');
}

// One row, built once and cloned: 500 rows of about a dozen elements each, so the list stays
// cheap to build and to style. Cell labels are CSS (data-label), shown on phones.
let rowProto: HTMLLIElement | null = null;

function proto(): HTMLLIElement {
  const cell = (cls: string, label: string, ...kids: Node[]) => el('div', { class: cls, 'data-label': label }, ...kids);
  return rowProto ??= el('li', { class: 'row' },
    el('div', { class: 'c-name' }, el('a', { class: 'name' }, el('span', { class: 'ns' }), document.createTextNode('')), el('span', { class: 'badge' })),
    cell('c-tags', 'Tags'), cell('c-family', 'Family'), cell('c-params', 'Parameters'), cell('c-quant', 'Quantization'),
    cell('c-size num', 'Size'), cell('c-date', 'Updated', el('time')));
}

function rowFor(m: ModelSummary): Row {
  const tr = proto().cloneNode(true) as HTMLLIElement;
  const [nameCell, tagsCell, family, params, quant, size, date] = Array.from(tr.children) as HTMLElement[];
  const link = nameCell!.firstElementChild as HTMLAnchorElement;
  link.href = modelHash(m);
  link.firstElementChild!.textContent = `${m.namespace}/`;
  (link.lastChild as Text).data = m.model;
  if (m.tags.some((t) => t.configMissing || t.missingBlobs > 0 || t.problem)) {
    link.after(el('span', { class: 'warn-dot', title: 'some files of this model are missing' }, '!'));
  }
  const badge = nameCell!.lastElementChild as HTMLElement;
  badge.className = `badge ${m.source.kind}`;
  badge.textContent = m.source.kind === 'pushed' ? 'pushed' : `from ${m.source.label}`;
  const kinds = distinct(m.tags.map((t) => KIND_LABELS[t.kind]));
  if (kinds) badge.after(el('span', { class: 'badge kind' }, kinds));
  for (const t of m.tags.slice(0, 6)) tagsCell!.append(el('a', { class: 'chip', href: modelHash(m, t.tag) }, t.tag));
  if (m.tags.length > 6) tagsCell!.append(el('span', { class: 'more' }, `+${m.tags.length - 6}`));
  family!.textContent = distinct(m.tags.map((t) => t.family)) || '—';
  params!.textContent = distinct(m.tags.map((t) => t.parameterSize)) || '—';
  quant!.textContent = distinct(m.tags.map((t) => t.quantization)) || '—';
  size!.textContent = formatBytes(m.size);
  const time = date!.firstElementChild as HTMLTimeElement;
  time.dateTime = m.modified;
  time.title = dateFormat.format(new Date(m.modified));
  time.textContent = formatAgo(m.modified);
  const text = SEP + [m.host, `${m.namespace}/${m.model}`, m.source.label, kinds, ...m.tags.map((t) => t.tag),
    ...m.tags.flatMap((t) => [t.family, t.parameterSize, t.quantization])].filter(Boolean).join(SEP).toLowerCase();
  // People look for the model's own name; the namespace and host only break ties.
  return { model: m, tr, text, name: `${m.model}\u0000${m.namespace}\u0000${m.host}`.toLowerCase() };
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

const SEP = '\u0001';
const BOUNDARY = new Set([SEP, '/', '.', ':', '_', '-', ' ']);

/** A word matches at the start of a name part, so "llama" finds Llama-3.2 but not every "ollama" host. */
function matches(text: string, word: string): boolean {
  for (let i = text.indexOf(word); i >= 0; i = text.indexOf(word, i + 1)) {
    if (BOUNDARY.has(text[i - 1]!)) return true;
  }
  return false;
}

function catalogParams(): URLSearchParams {
  const q = location.hash.indexOf('?');
  return new URLSearchParams(q >= 0 ? location.hash.slice(q + 1) : '');
}

async function showCatalog(): Promise<void> {
  setStatus('Loading models…');
  const data = await getJson<CatalogResponse>('/api/ui/models');
  const started = performance.now();
  const params = catalogParams();
  const disk = document.getElementById('disk')!;
  disk.textContent = `Models use ${formatBytes(data.disk.bytes)} (${data.disk.blobs} blobs)` + (data.disk.free !== null ? ` · ${formatBytes(data.disk.free)} free` : '');
  renderAccount(data.features);
  const mirror = document.getElementById('mirror-link') as HTMLAnchorElement | null;
  if (mirror) {
    mirror.hidden = !data.features.mirror;
    if (data.features.mirror) mirror.href = data.features.mirror.setupUrl;
  }

  const search = el('input', { type: 'search', id: 'q', placeholder: 'Filter: name, tag, family, quantization…', 'aria-label': 'Filter models', autocomplete: 'off', spellcheck: 'false' });
  search.value = params.get('q') ?? '';
  const sources = [...new Set(data.models.map((m) => m.source.label))].sort();
  const source = el('select', { id: 'source', 'aria-label': 'Source' }, el('option', { value: '' }, 'All sources'),
    ...sources.map((s) => el('option', { value: s }, s === 'pushed' ? 'Pushed' : `From ${s}`)));
  source.value = sources.includes(params.get('source') ?? '') ? params.get('source')! : '';
  const sort = el('select', { id: 'sort', 'aria-label': 'Sort by' },
    el('option', { value: 'name' }, 'Name'), el('option', { value: 'size' }, 'Size'), el('option', { value: 'date' }, 'Updated'));
  sort.value = ['name', 'size', 'date'].includes(params.get('sort') ?? '') ? params.get('sort')! : 'name';
  let desc = params.get('desc') === '1';
  const dir = el('button', { type: 'button', id: 'dir', class: 'dir' });
  const count = el('p', { id: 'count', class: 'count', 'aria-live': 'polite' });
  // A list of grid rows, not a <table>: rows off screen skip layout and paint
  // (content-visibility), which table rows cannot do.
  const tbody = el('ul', { class: 'rows', 'aria-label': 'Models' });
  const table = el('div', { class: 'catalog', id: 'catalog' },
    el('div', { class: 'head', 'aria-hidden': 'true' }, ...['Model', 'Tags', 'Family', 'Parameters', 'Quantization', 'Size', 'Updated']
      .map((h, i) => el('span', { class: i === 5 ? 'num' : null }, h))), tbody);

  const rows = data.models.map(rowFor);
  const frag = document.createDocumentFragment();
  for (const r of rows) frag.append(r.tr);
  tbody.append(frag);

  const apply = (reorder: boolean) => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let visible = 0;
    for (const r of rows) {
      const show = (!source.value || r.model.source.label === source.value) && words.every((w) => matches(r.text, w));
      r.tr.hidden = !show;
      if (show) visible++;
    }
    if (reorder) {
      const key = sort.value as SortKey;
      const cmp = (a: Row, b: Row) => key === 'size' ? a.model.size - b.model.size
        : key === 'date' ? a.model.modified.localeCompare(b.model.modified)
        : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
      // Size and date read naturally biggest/newest first; "desc" flips the natural order.
      const natural = key === 'name' ? 1 : -1;
      rows.sort((a, b) => cmp(a, b) * natural * (desc ? -1 : 1));
      const f = document.createDocumentFragment();
      for (const r of rows) f.append(r.tr);
      tbody.append(f);
      const order = key === 'name' ? (desc ? 'Z–A' : 'A–Z') : key === 'size' ? (desc ? 'Smallest first' : 'Largest first') : (desc ? 'Oldest first' : 'Newest first');
      dir.textContent = order;
      dir.setAttribute('aria-label', `Order: ${order}; press to reverse`);
      dir.setAttribute('aria-pressed', String(desc));
    }
    const total = rows.length;
    const empty = data.signInToRead ? 'This registry shows its models to signed-in users: sign in to see them.' : 'No models yet.';
    count.textContent = total === 0 ? empty : visible === total ? `${total} model${total === 1 ? '' : 's'}` : `${visible} of ${total} models`;
    const p = new URLSearchParams();
    if (search.value) p.set('q', search.value);
    if (source.value) p.set('source', source.value);
    if (sort.value !== 'name') p.set('sort', sort.value);
    if (desc) p.set('desc', '1');
    const qs = p.toString();
    const hash = `#/${qs ? `?${qs}` : ''}`;
    nav.catalog = hash;
    if (location.hash !== hash && !(location.hash === '' && hash === '#/')) history.replaceState(null, '', hash);
  };
  search.addEventListener('input', () => apply(false));
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && search.value) {
      search.value = '';
      apply(false);
    }
  });
  source.addEventListener('change', () => apply(false));
  sort.addEventListener('change', () => apply(true));
  dir.addEventListener('click', () => {
    desc = !desc;
    apply(true);
  });

  const toolbar = el('div', { class: 'toolbar' }, search, source,
    el('span', { class: 'sortby' }, el('label', { for: 'sort' }, 'Sort'), sort, dir));
  const prefetch = renderPrefetch(data.features, () => void route());
  main.replaceChildren(el('h1', { class: 'visually-hidden' }, 'Models'), ...(prefetch ? [prefetch] : []), toolbar, count, table);
  setStatus('');
  apply(true);
  // For tests and the curious: DOM build time, and when the full list was first painted
  // (ms since navigation started; a timeout after the next frame runs once it is painted).
  table.dataset.renderMs = (performance.now() - started).toFixed(1);
  table.dataset.fetchedAt = started.toFixed(1);
  requestAnimationFrame(() => setTimeout(() => { table.dataset.paintedAt = performance.now().toFixed(1); }));
  document.title = 'Models · ollama-registry';
}

/** What is on screen: the catalog and error views depend on who is signed in. */
let view: 'catalog' | 'model' | 'error' = 'catalog';

async function route(): Promise<void> {
  const hash = location.hash.replace(/^#/, '');
  try {
    if (hash.startsWith('/m/')) {
      const parts = hash.slice(3).split('/').map(decodeURIComponent);
      if (parts.length < 3) throw new Error('That link does not name a model.');
      view = 'model';
      main.replaceChildren();
      setStatus('Loading model…');
      await renderModel(main, parts[0]!, parts[1]!, parts[2]!, parts[3] ?? null, () => setStatus(''));
    } else {
      view = 'catalog';
      await showCatalog();
    }
    if (nav.flash) setStatus(nav.flash);
  } catch (e) {
    view = 'error';
    main.replaceChildren();
    let msg = (e as Error).message || 'Something went wrong.';
    if (e instanceof ApiError && e.status === 401) {
      // Reads need credentials: the catalog's features say how to sign in.
      const cat = await getJson<CatalogResponse>('/api/ui/models').catch(() => null);
      if (cat) renderAccount(cat.features);
      msg = `Sign in to see this model (${msg}).`;
    }
    setStatus(msg, true);
    main.append(el('p', null, el('a', { href: '#/' }, 'Back to all models')));
  }
  nav.flash = '';
}

onSessionChange(() => {
  if (view !== 'model') void route();
});

// The filter's own query changes use replaceState, which fires no hashchange.
window.addEventListener('hashchange', () => void route().then(() => main.focus({ preventScroll: true })));
document.addEventListener('keydown', (e) => {
  const t = e.target as HTMLElement;
  if (e.key === '/' && !(t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement)) {
    const q = document.getElementById('q');
    if (q) {
      e.preventDefault();
      q.focus();
    }
  }
});
void route();
