// A model's page: its tags, the commands to pull it, and the chosen tag's details and texts.
import { deleteButton, renderAccount } from './actions.js';
import {
  authHeaders, commands, copyLine, KIND_LABELS, otherCommands, currentSession, el, errorOf, go, formatBytes, getJson, modelHash, nav, timeEl, type DetailsResponse, type TextLayer,
} from './util.js';

function blobUrl(d: DetailsResponse, digest: string): string {
  return `/v2/${encodeURIComponent(d.model.namespace)}/${encodeURIComponent(d.model.model)}/blobs/${digest}`;
}

/**
 * A link that downloads a whole blob. Signed in, the file is fetched with the session's token
 * (a plain link carries none, and reads may need credentials), then saved from memory: these
 * are text layers, not model weights.
 */
function downloadLink(url: string, name: string): HTMLElement {
  const a = el('a', { href: url, download: name }, 'Download all of it');
  a.addEventListener('click', (ev) => {
    if (!currentSession()) return;
    ev.preventDefault();
    void (async () => {
      const res = await fetch(url, { headers: authHeaders() });
      if (!res.ok) throw await errorOf(res);
      const save = el('a', { href: URL.createObjectURL(await res.blob()), download: name });
      document.body.append(save); // a detached link's click saves nothing in some browsers
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(save.href), 60_000);
    })().catch((e: Error) => a.replaceWith(el('span', { class: 'warn' }, `Download failed: ${e.message}`)));
  });
  return a;
}

function textSection(d: DetailsResponse, title: string, layer: TextLayer | null, open: boolean): HTMLElement | null {
  if (!layer) return null;
  const note = layer.missing ? el('p', { class: 'warn' }, 'This file is missing from the registry.')
    : layer.truncated ? el('p', { class: 'note' }, `Showing the first ${formatBytes(layer.text.length)} of ${formatBytes(layer.size)}. `,
      downloadLink(blobUrl(d, layer.digest), `${title.toLowerCase().replace(/\W+/g, '-')}.txt`), '.')
    : null;
  return el('details', { class: 'text', open },
    el('summary', null, el('h2', null, title), el('span', { class: 'muted' }, ` ${formatBytes(layer.size)}`)),
    note, layer.text ? el('pre', { tabindex: 0 }, layer.text) : null);
}

/** ollama prints parameters as Modelfile lines: name, then value (strings quoted), one line per list item. */
function paramsSection(d: DetailsResponse): HTMLElement | null {
  const p = d.texts.params;
  if (!p) return null;
  if (!p.values) return textSection(d, 'Parameters', p, true);
  const rows: HTMLElement[] = [];
  for (const [k, v] of Object.entries(p.values)) {
    for (const item of Array.isArray(v) ? v : [v]) {
      rows.push(el('tr', null, el('th', { scope: 'row' }, k), el('td', null, el('code', null, JSON.stringify(item)))));
    }
  }
  return el('section', { class: 'params' }, el('h2', null, 'Parameters'),
    rows.length ? el('table', { class: 'kv' }, el('tbody', null, ...rows)) : el('p', { class: 'muted' }, 'None.'));
}

function dl(entries: Array<[string, Node | string | null]>): HTMLElement {
  const out = el('dl', { class: 'facts' });
  for (const [k, v] of entries) if (v !== null && v !== '') out.append(el('div', null, el('dt', null, k), el('dd', null, v)));
  return out;
}

function commandsSection(d: DetailsResponse): HTMLElement {
  const { namespace, model } = d.model;
  const kind = d.tag.kind;
  if (kind === 'docker-model' || kind === 'modelpack' || kind === 'image') {
    const o = otherCommands(location, namespace, model, d.tag.tag, kind);
    return el('section', { class: 'pull', 'aria-labelledby': 'pull-h' },
      el('h2', { id: 'pull-h' }, kind === 'image' ? 'Pull the image' : 'Pull it with docker model'),
      o.note ? el('p', { class: 'note' }, o.note) : null,
      el('div', { class: 'os' }, ...o.lines.map(([label, text]) => copyLine(label, text))));
  }
  const c = commands(location, namespace, model, d.tag.tag);
  const same = c.unix.pull === c.windows.pull;
  return el('section', { class: 'pull', 'aria-labelledby': 'pull-h' },
    el('h2', { id: 'pull-h' }, 'Pull it'),
    c.hostNote ? el('p', { class: 'warn' }, c.hostNote) : null,
    d.tag.shadowedBy ? el('p', { class: 'warn' }, `Pulls of this name get the copy in the ${d.tag.shadowedBy} folder, which is searched first.`) : null,
    el('div', { class: 'os' }, el('h3', null, same ? 'Linux, macOS and Windows' : 'Linux and macOS'),
      copyLine('Pull', c.unix.pull), copyLine('Short name', c.unix.cp)),
    same ? null : el('div', { class: 'os' }, el('h3', null, 'Windows'),
      c.windowsNote ? el('p', { class: 'note' }, c.windowsNote) : null,
      copyLine('Pull', c.windows.pull), copyLine('Short name', c.windows.cp)));
}

/** A list's children: the variants of an ollama model (runner, format) or the platforms of an image. */
function childrenSection(d: DetailsResponse): HTMLElement | null {
  if (!d.children.length) return null;
  const ollama = d.tag.kind === 'ollama-list';
  const head = ollama ? ['Runner', 'Format'] : ['Platform'];
  return el('section', { 'aria-labelledby': 'children-h' }, el('h2', { id: 'children-h' }, ollama ? 'Variants' : 'Platforms'),
    el('table', { class: 'layers children' },
      el('thead', null, el('tr', null, ...head.map((h) => el('th', { scope: 'col' }, h)), el('th', { scope: 'col', class: 'num' }, 'Size'), el('th', { scope: 'col' }, 'Digest'))),
      el('tbody', null, ...d.children.map((c) => el('tr', { class: c.present ? null : 'missing' },
        ...(ollama ? [c.runner ?? '—', c.format ?? '—'] : [c.platform ?? '—']).map((v) => el('td', null, v)),
        el('td', { class: 'num' }, c.blobsSize === null ? el('span', { class: 'warn' }, 'missing') : formatBytes(c.blobsSize)),
        el('td', null, el('code', { class: 'digest', title: c.digest }, c.digest.slice(7, 19))))))));
}

export async function renderModel(main: HTMLElement, host: string, ns: string, model: string, tag: string | null, loaded: () => void): Promise<void> {
  const q = new URLSearchParams({ host, namespace: ns, model });
  if (tag) q.set('tag', tag);
  const d = await getJson<DetailsResponse>(`/api/ui/model?${q}`);
  const t = d.tag;
  const m = d.model;
  renderAccount(d.features);
  const warnings = [
    t.problem ? `The manifest cannot be read: ${t.problem}` : null,
    t.configMissing ? 'The config blob is missing, so family, size and quantization are unknown.' : null,
    t.missingBlobs > 0 ? `${t.missingBlobs} of its files are missing from the registry: a pull will fail.` : null,
  ].filter((w): w is string => !!w);
  const tags = el('ul', { class: 'tags' }, ...m.tags.map((x) => el('li', null,
    el('a', { class: 'chip', href: modelHash(m, x.tag), 'aria-current': x.tag === t.tag ? 'page' : null },
      x.tag, el('span', { class: 'muted' }, ` ${formatBytes(x.size)}`)))));
  const cfg = d.config?.values ?? {};
  const ctx = d.contextLength ? `${d.contextLength.value.toLocaleString('en')} (from the ${d.contextLength.from})` : null;
  const layers = el('table', { class: 'layers' },
    el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Layer'), el('th', { scope: 'col', class: 'num' }, 'Size'), el('th', { scope: 'col' }, 'Digest'))),
    el('tbody', null, ...d.layers.map((l) => el('tr', { class: l.present ? null : 'missing' },
      el('td', null, l.kind, l.present ? null : el('span', { class: 'warn' }, ' missing'), l.from ? el('div', { class: 'muted' }, `from ${l.from}`) : null),
      el('td', { class: 'num' }, formatBytes(l.size)),
      el('td', null, el('code', { class: 'digest', title: l.digest }, l.digest.slice(7, 19)))))));
  const kids: Array<Node | null> = [
    el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, el('a', { href: nav.catalog }, '← All models')),
    el('h1', null, el('span', { class: 'ns' }, `${m.namespace}/`), m.model, el('span', { class: 'tagname' }, `:${t.tag}`)),
    el('p', { class: 'sub' }, el('span', { class: `badge ${m.source.kind}` }, m.source.kind === 'pushed' ? 'pushed' : `from ${m.source.label}`),
      KIND_LABELS[t.kind] ? el('span', { class: 'badge kind' }, KIND_LABELS[t.kind]!) : null,
      ` host folder ${m.host} · updated `, timeEl(t.modified)),
    ...warnings.map((w) => el('p', { class: 'warn', role: 'alert' }, w)),
    el('nav', { 'aria-label': 'Tags' }, tags),
    d.features.delete ? deleteButton(d.features, m, t.tag, () => {
      nav.flash = `Deleted ${m.namespace}/${m.model}:${t.tag}.`;
      go(m.tags.length > 1 ? modelHash(m) : nav.catalog);
    }) : null,
    commandsSection(d),
    el('section', { 'aria-labelledby': 'details-h' }, el('h2', { id: 'details-h' }, 'Details'), dl([
      ['Family', t.family ?? (Array.isArray(cfg.model_families) ? cfg.model_families.join(', ') : null) ?? '—'],
      ['Parameters', t.parameterSize ?? '—'],
      ['Quantization', t.quantization ?? '—'],
      ['Context length', ctx],
      ['Format', typeof cfg.model_format === 'string' ? cfg.model_format : typeof cfg.format === 'string' ? cfg.format : null],
      ['Platform', t.platform],
      ['Requires ollama', typeof cfg.requires === 'string' ? cfg.requires : null],
      ['Size', `${formatBytes(t.size)} (${t.size.toLocaleString('en')} bytes)`],
      ['ID (ollama list)', t.kind === 'ollama' || t.kind === 'ollama-list' ? el('code', null, d.manifest.id) : null],
      ['Manifest digest', el('code', { class: 'digest' }, d.manifest.digest)],
      ['Config digest', d.config ? el('code', { class: 'digest' }, d.config.digest) : null],
    ])),
    childrenSection(d),
    d.layers.length ? el('section', { 'aria-labelledby': 'layers-h' }, el('h2', { id: 'layers-h' }, 'Layers'), layers) : null,
    textSection(d, 'Template', d.texts.template, true),
    textSection(d, 'System prompt', d.texts.system, true),
    paramsSection(d),
    textSection(d, 'Messages', d.texts.messages, false),
    ...d.texts.licenses.map((l, i) => textSection(d, d.texts.licenses.length > 1 ? `License ${i + 1}` : 'License', l, false))];
  main.replaceChildren(...kids.filter((k): k is Node => k !== null));
  loaded();
  document.title = `${m.namespace}/${m.model}:${t.tag} · ollama-registry`;
  window.scrollTo(0, 0);
}
