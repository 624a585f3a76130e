// Model names and the models folder as ollama sees them (ollama/ollama:types/model/name.go,
// internal/modelref, server/routes.go getExistingName, manifest/*.go; protocol §1, §4.1, §7),
// and the part layout shared by downloads and uploads (§3.2, §5.4).
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { GoURL } from './ollama-http.js';

export interface ModelName {
  host: string;
  namespace: string;
  model: string;
  tag: string;
  /** From a typed `scheme://` prefix, else `https`; ollama itself drops it (DisplayShortest). */
  scheme: string;
}

const MISSING = '!MISSING!';
const DEFAULTS = { host: 'registry.ollama.ai', namespace: 'library', tag: 'latest', scheme: 'https' };

const cutLastPromised = (s: string, sep: string): [string, string, boolean] => {
  const i = s.lastIndexOf(sep);
  if (i < 0) return [s, '', false];
  return [s.slice(0, i) || MISSING, s.slice(i + sep.length) || MISSING, true];
};

/** ParseNameBare + Merge(DefaultName()): parts may be invalid (see isFullyQualified). */
export function parseNameLoose(s: string): ModelName {
  const n = { host: '', namespace: '', model: '', tag: '', scheme: '' };
  if (s.lastIndexOf(':') > s.lastIndexOf('/')) [s, n.tag] = cutLastPromised(s, ':');
  let promised: boolean;
  [s, n.model, promised] = cutLastPromised(s, '/');
  if (!promised) n.model = s;
  else {
    [s, n.namespace, promised] = cutLastPromised(s, '/');
    if (!promised) n.namespace = s;
    else {
      const i = s.indexOf('://');
      if (i >= 0) [n.scheme, n.host] = [s.slice(0, i), s.slice(i + 3)];
      else n.host = s;
    }
  }
  return { host: n.host || DEFAULTS.host, namespace: n.namespace || DEFAULTS.namespace, model: n.model, tag: n.tag || DEFAULTS.tag, scheme: n.scheme || DEFAULTS.scheme };
}

type PartKind = 'host' | 'namespace' | 'model' | 'tag';

/** isValidPart + isValidLen (ASCII only). */
export function isValidPart(kind: PartKind, s: string): boolean {
  if (s.length < 1 || s.length > (kind === 'host' ? 350 : 80)) return false;
  if (!/^[A-Za-z0-9_]/.test(s)) return false;
  const rest = kind === 'host' ? /^[A-Za-z0-9_\-.:]*$/ : kind === 'namespace' ? /^[A-Za-z0-9_-]*$/ : /^[A-Za-z0-9_\-.]*$/;
  return rest.test(s.slice(1));
}

export const isFullyQualified = (n: ModelName) =>
  isValidPart('host', n.host) && isValidPart('namespace', n.namespace) && isValidPart('model', n.model) && isValidPart('tag', n.tag);

/** ollama's model name grammar with defaults (§1.1/1.2). Throws `invalid model name`. */
export function parseName(name: string): ModelName {
  const n = parseNameLoose(name);
  if (!isFullyQualified(n)) throw new Error('invalid model name');
  return n;
}

/** Name.String(): host/namespace/model:tag. */
export const nameString = (n: ModelName) => `${n.host}/${n.namespace}/${n.model}:${n.tag}`;

/** Name.DisplayShortest(): what the local API hands to PullModel/PushModel (scheme dropped). */
export function displayShortest(n: ModelName): string {
  let s = '';
  if (n.host.toLowerCase() !== DEFAULTS.host) s = `${n.host}/${n.namespace}/`;
  else if (n.namespace.toLowerCase() !== DEFAULTS.namespace) s = `${n.namespace}/`;
  return `${s}${n.model}:${n.tag}`;
}

/** modelref.NormalizePullName: `:local` is stripped, `:cloud`/`-cloud` kept in legacy form. */
export function normalizePullName(raw: string): string {
  const suffix = (s: string): [string, 'cloud' | 'local' | null] => {
    const i = s.lastIndexOf(':');
    if (i < 0) return [s, null];
    const sufRaw = s.slice(i + 1).trim();
    const suf = sufRaw.toLowerCase();
    if (suf === 'cloud' || suf === 'local') return [s.slice(0, i), suf];
    if (!sufRaw.includes('/') && suf.endsWith('-cloud')) return [s.slice(0, i + 1) + sufRaw.slice(0, -'-cloud'.length), 'cloud'];
    return [s, null];
  };
  const trimmed = raw.trim();
  if (!trimmed) throw new Error('model is required');
  const [base, source] = suffix(trimmed);
  if (source && suffix(base)[1]) throw new Error(`use either :local or :cloud, not both: ${JSON.stringify(trimmed)}`);
  if (source !== 'cloud') return base;
  return base.lastIndexOf(':') > base.lastIndexOf('/') ? `${base}-cloud` : `${base}:cloud`;
}

/** n.BaseURL().JoinPath("v2", "<ns>/<model>", ...elems). */
export function registryURL(n: ModelName, ...elems: string[]): GoURL {
  return { scheme: n.scheme, host: n.host, path: `/${['v2', n.namespace, n.model, ...elems].join('/')}`, rawQuery: '', fragment: '' };
}

/** manifest.BlobsPath: only `sha256[:-]<64 hex>` digests; the file name uses `-`. */
export function blobPath(modelsDir: string, digest: string): string {
  if (!/^sha256[:-][0-9a-fA-F]{64}$/.test(digest)) throw new Error('invalid digest format');
  return path.join(modelsDir, 'blobs', digest.replace(/:/g, '-'));
}

export const manifestPath = (modelsDir: string, n: ModelName) => path.join(modelsDir, 'manifests', n.host, n.namespace, n.model, n.tag);

// ---- manifests ----

export interface Layer {
  mediaType: string;
  digest: string;
  size: number;
  from?: string;
  name?: string;
}

export interface Manifest {
  schemaVersion: number;
  mediaType: string;
  config: Layer;
  layers: Layer[] | null;
}

const toLayer = (v: unknown): Layer => {
  const o = (v && typeof v === 'object' ? v : {}) as Record<string, unknown>;
  const str = (x: unknown) => (typeof x === 'string' ? x : '');
  return { mediaType: str(o.mediaType), digest: str(o.digest), size: typeof o.size === 'number' ? o.size : 0, from: str(o.from), name: str(o.name) };
};

/** json.Unmarshal into manifest.Manifest (unknown fields dropped, missing ones zero). */
export function decodeManifest(bytes: Buffer): Manifest {
  const v: unknown = JSON.parse(bytes.toString('utf8'));
  if (v !== null && (typeof v !== 'object' || Array.isArray(v))) {
    throw new Error(`json: cannot unmarshal ${Array.isArray(v) ? 'array' : typeof v} into Go value of type manifest.Manifest`);
  }
  const o = (v ?? {}) as Record<string, unknown>;
  return {
    schemaVersion: typeof o.schemaVersion === 'number' ? o.schemaVersion : 0,
    mediaType: typeof o.mediaType === 'string' ? o.mediaType : '',
    config: toLayer(o.config),
    layers: Array.isArray(o.layers) ? o.layers.map(toLayer) : null,
  };
}

/** json.Marshal(manifest.Manifest): compact, Go key order, omitempty from/name, HTML-escaped. */
export function marshalManifest(m: Manifest): Buffer {
  const layer = (l: Layer) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(l.from ? { from: l.from } : {}), ...(l.name ? { name: l.name } : {}) });
  const json = JSON.stringify({ schemaVersion: m.schemaVersion, mediaType: m.mediaType, config: layer(m.config), layers: m.layers ? m.layers.map(layer) : null });
  const goEscapes: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029' };
  return Buffer.from(json.replace(/[<>&\u2028\u2029]/g, (c) => goEscapes[c]!));
}

async function dirs(p: string): Promise<string[]> {
  try {
    return (await readdir(p, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** manifest.Manifests(true): every file at manifests/<host>/<ns>/<model>/<tag> with a valid name that parses. */
export async function listManifests(modelsDir: string): Promise<Array<{ name: ModelName; manifest: Manifest }>> {
  const root = path.join(modelsDir, 'manifests');
  const out: Array<{ name: ModelName; manifest: Manifest }> = [];
  for (const host of await dirs(root)) {
    for (const namespace of await dirs(path.join(root, host))) {
      for (const model of await dirs(path.join(root, host, namespace))) {
        const dir = path.join(root, host, namespace, model);
        for (const e of (await readdir(dir, { withFileTypes: true }).catch(() => [])).sort((a, b) => (a.name < b.name ? -1 : 1))) {
          const name = { host, namespace, model, tag: e.name, scheme: DEFAULTS.scheme };
          if (e.isDirectory() || !isFullyQualified(name)) continue;
          try {
            out.push({ name, manifest: decodeManifest(await readFile(path.join(dir, e.name))) });
          } catch {
            // "bad manifest": skipped
          }
        }
      }
    }
  }
  return out;
}

/**
 * getExistingName: each part of the name takes the spelling of any local manifest's part that is
 * equal under case folding (ollama iterates a Go map, so with several spellings any may win; here
 * the last in sorted order does).
 */
export async function getExistingName(modelsDir: string, n: ModelName): Promise<ModelName> {
  const out = { ...n };
  const eq = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
  for (const { name: e } of await listManifests(modelsDir)) {
    if (eq(e.host, out.host)) out.host = e.host;
    if (eq(e.namespace, out.namespace)) out.namespace = e.namespace;
    if (eq(e.model, out.model)) out.model = e.model;
    if (eq(e.tag, out.tag)) out.tag = e.tag;
  }
  return out;
}

// ---- part layout (download.go Prepare / upload.go Prepare) ----

export interface PartLayout {
  numParts: number;
  minPartSize: number;
  maxPartSize: number;
}

export const OLLAMA_PARTS: PartLayout = { numParts: 16, minPartSize: 100_000_000, maxPartSize: 1_000_000_000 };

/** size = clamp(total / numParts); parts at 0, size, 2·size…, the last one shorter. A number = that fixed size. */
export function layoutParts(total: number, layout: PartLayout | number = OLLAMA_PARTS): Array<{ offset: number; size: number }> {
  let size = typeof layout === 'number' ? layout : Math.min(Math.max(Math.floor(total / layout.numParts), layout.minPartSize), layout.maxPartSize);
  if (!(size > 0)) throw new Error(`bad part size ${size}`);
  const parts: Array<{ offset: number; size: number }> = [];
  for (let offset = 0; offset < total; offset += size) {
    if (offset + size > total) size = total - offset;
    parts.push({ offset, size });
  }
  return parts;
}
