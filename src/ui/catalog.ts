// The catalog the web page shows: every tag of every host folder, summarised from its manifest
// and config blob. Blob bytes never change for a digest, so parsed config blobs are cached.
import { Coalesce } from '../coalesce.js';
import type { App } from '../app.js';
import type { Descriptor, Manifest } from '../registry/manifests/manifest-format.js';
import { MAX_CONFIG_BYTES, parseManifest } from '../registry/manifests/manifest-format.js';
import type { ManifestRef, StoredManifest } from '../registry/manifests/manifests.js';
import { isValidPart } from '../names.js';
import { manifestDir, manifestKey } from '../storage/layout.js';
import type { ModelSummary, Source, TagSummary } from './client/api.js';
import { sourceOf } from '../registry/housekeeping/sources.js';
import { artifactKind, configFacts } from './artifact.js';
import { treeDigests } from '../registry/manifests/manifest-tree.js';

export type { ModelSummary, TagSummary };

export interface Catalog {
  models: ModelSummary[];
  /** Distinct blobs referenced by any manifest and present in the store. */
  disk: { bytes: number; blobs: number; free: number | null; total: number | null };
}

export interface ConfigInfo {
  values: Record<string, unknown>;
  family: string | null;
  parameterSize: string | null;
  quantization: string | null;
  contextLength: number | null;
  platform: string | null;
}

const CACHE_MAX = 50_000;

/** What one manifest file says, kept while the file's mtime and size stay the same. */
interface Parsed {
  mtimeMs: number;
  bytes: number;
  summary: TagSummary;
  manifest: Manifest | null;
  config: ConfigInfo | null;
  /** Every blob the tag needs (a list's children's too). */
  blobs: Descriptor[];
}

// Per App (tests run several registries in one process). Config blobs are content-addressed,
// so a parsed config stays right for its digest; manifests are re-read when their file changes.
const caches = new WeakMap<App, { configs: Map<string, ConfigInfo>; tags: Map<string, Parsed> }>();

function cacheOf(app: App) {
  let c = caches.get(app);
  if (!c) caches.set(app, (c = { configs: new Map(), tags: new Map() }));
  return c;
}

function remember<K, V>(map: Map<K, V>, key: K, value: V): V {
  if (map.size >= CACHE_MAX) map.clear();
  map.set(key, value);
  return value;
}

/** Read at most `max` bytes from the start of a blob; null when the blob is absent. */
export async function readBlobHead(app: App, digest: string, max: number): Promise<{ bytes: Buffer; size: number } | null> {
  const size = await app.blobs.size(digest);
  if (size === null) return null;
  if (size === 0) return { bytes: Buffer.alloc(0), size };
  const chunks: Buffer[] = [];
  try {
    for await (const c of await app.blobs.open(digest, { start: 0, end: Math.min(size, max) - 1 })) chunks.push(c as Buffer);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return { bytes: Buffer.concat(chunks), size };
}

/** The config blob's fields, or null when it is absent or not a JSON object. */
export async function readConfig(app: App, desc: Descriptor | undefined): Promise<ConfigInfo | null> {
  if (!desc) return null;
  const configs = cacheOf(app).configs;
  const hit = configs.get(desc.digest);
  if (hit) return hit;
  const head = await readBlobHead(app, desc.digest, MAX_CONFIG_BYTES);
  if (!head || head.size > MAX_CONFIG_BYTES) return null;
  let values: unknown;
  try {
    values = JSON.parse(head.bytes.toString('utf8'));
  } catch {
    return null;
  }
  if (!values || typeof values !== 'object' || Array.isArray(values)) return null;
  const v = values as Record<string, unknown>;
  return remember(configs, desc.digest, { values: v, ...configFacts(v) });
}

/** Run fn over items with at most `limit` at a time, keeping order. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function blobsOf(m: Manifest): Descriptor[] {
  return [...(m.config ? [m.config] : []), ...m.layers];
}

/** Parse a stored manifest and its config blob into the parts of a summary that depend only on them. */
async function parse(app: App, stored: StoredManifest): Promise<Parsed> {
  const summary: TagSummary = {
    tag: stored.tag, size: 0, family: null, parameterSize: null, quantization: null, contextLength: null,
    modified: new Date(stored.mtimeMs).toISOString(), digest: stored.digest, id: stored.digest.slice(7, 19),
    configMissing: false, missingBlobs: 0, shadowedBy: null, problem: null, kind: 'ollama', platform: null,
  };
  const parsed: Parsed = { mtimeMs: stored.mtimeMs, bytes: stored.bytes.length, summary, manifest: null, config: null, blobs: [] };
  try {
    parsed.manifest = parseManifest(stored.bytes);
  } catch (e) {
    summary.problem = (e as Error).message;
    return parsed;
  }
  summary.kind = artifactKind(parsed.manifest);
  // A list: its children and their blobs (what a pull of any of them may fetch).
  parsed.blobs = parsed.manifest.kind === 'list' ? await treeDigests(app.driver, parsed.manifest) : blobsOf(parsed.manifest);
  for (const d of parsed.blobs) summary.size += d.size;
  parsed.config = await readConfig(app, parsed.manifest.config);
  const c = parsed.config;
  if (c) Object.assign(summary, { family: c.family, parameterSize: c.parameterSize, quantization: c.quantization, contextLength: c.contextLength, platform: c.platform });
  return parsed;
}

/**
 * One tag's summary, or null when its manifest is gone. `sizes` memoises blob sizes (null =
 * absent) across a request: which blobs are present is checked on every request.
 */
export async function summarise(
  app: App, ref: ManifestRef, sizes: Map<string, Promise<number | null>>, shadowedBy: string | null,
): Promise<{ summary: TagSummary; manifest: Manifest | null; config: ConfigInfo | null; blobs: Descriptor[] } | null> {
  const key = manifestKey(ref.host, ref.namespace, ref.model, ref.tag);
  const tags = cacheOf(app).tags;
  const st = await app.driver.stat(key);
  if (!st) return null;
  let parsed = tags.get(key);
  if (!parsed || parsed.mtimeMs !== st.mtimeMs || parsed.bytes !== st.size || (!parsed.config && parsed.manifest?.config)) {
    const stored = await app.manifests.read(ref);
    if (!stored) return null;
    parsed = remember(tags, key, await parse(app, stored));
  }
  const summary: TagSummary = { ...parsed.summary, shadowedBy, missingBlobs: 0 };
  for (const d of parsed.blobs) {
    let p = sizes.get(d.digest);
    if (!p) sizes.set(d.digest, (p = app.blobs.size(d.digest)));
    if ((await p) === null) summary.missingBlobs++;
  }
  const cfg = parsed.manifest?.config;
  summary.configMissing = !!cfg && (!parsed.config || (await sizes.get(cfg.digest)) === null);
  return { summary, manifest: parsed.manifest, config: parsed.config, blobs: parsed.blobs };
}

const repoKey = (r: { host: string; namespace: string; model: string }) => `${r.host}/${r.namespace}/${r.model}`;
const foldKey = (r: ManifestRef) => `${r.namespace}/${r.model}:${r.tag}`.toLowerCase();

type Shadow = (ref: ManifestRef, present: ManifestRef[]) => Promise<string | null>;

/** Summaries of the given tags, grouped by repository; `shadow` names the folder that answers instead. */
async function collect(app: App, refs: ManifestRef[], shadow: Shadow, sizes: Map<string, Promise<number | null>>): Promise<ModelSummary[]> {
  const rows = (await mapLimit(refs, 16, async (ref) => {
    const got = await summarise(app, ref, sizes, null);
    return got && { ref, summary: got.summary, blobs: got.blobs };
  })).filter((r) => r !== null);
  const present = rows.map((r) => r.ref);
  for (const row of rows) row.summary.shadowedBy = await shadow(row.ref, present);
  const models = new Map<string, ModelSummary & { digests: Set<string> }>();
  for (const row of rows) {
    const key = repoKey(row.ref);
    let m = models.get(key);
    if (!m) {
      const { host, namespace, model } = row.ref;
      m = { host, namespace, model, source: pageSource(app, host), tags: [], size: 0, modified: row.summary.modified, digests: new Set() };
      models.set(key, m);
    }
    m.tags.push(row.summary);
    if (row.summary.modified > m.modified) m.modified = row.summary.modified;
    for (const d of row.blobs) {
      if (!m.digests.has(d.digest)) {
        m.digests.add(d.digest);
        m.size += d.size;
      }
    }
  }
  // 'latest' first, then tags in natural order (2b before 9b before 27b).
  const order = (a: TagSummary, b: TagSummary) => (b.tag === 'latest' ? 1 : 0) - (a.tag === 'latest' ? 1 : 0)
    || a.tag.localeCompare(b.tag, 'en', { numeric: true, sensitivity: 'base' }) || (a.tag < b.tag ? -1 : 1);
  return [...models.values()].map(({ digests: _d, ...m }) => ({ ...m, tags: m.tags.sort(order) }));
}

/** The page's source of a host folder: pushed here, or named after the registry its models came from. */
function pageSource(app: App, host: string): Source {
  return sourceOf(app.config, host) === 'pushed' ? { kind: 'pushed', label: 'pushed' } : { kind: 'upstream', label: host };
}

const building = new Coalesce<App, Catalog>();

/** Everything the catalog page lists; requests that arrive while it is being built share it. */
export function buildCatalog(app: App): Promise<Catalog> {
  return building.run(app, () => build(app));
}

/** Every tag file name, host folders in lookup order; folders are listed in parallel (what all() yields, faster). */
async function allRefs(app: App): Promise<ManifestRef[]> {
  const valid = (kind: 'namespace' | 'model' | 'tag') => (names: string[]) => names.filter((n) => isValidPart(kind, n));
  const out: ManifestRef[] = [];
  for (const host of await app.manifests.hosts()) {
    const namespaces = valid('namespace')(await app.driver.list(manifestDir(host)));
    const models = (await mapLimit(namespaces, 16, async (namespace) =>
      valid('model')(await app.driver.list(manifestDir(host, namespace))).map((model) => ({ namespace, model })))).flat();
    const tags = await mapLimit(models, 16, async ({ namespace, model }) =>
      valid('tag')(await app.driver.list(manifestDir(host, namespace, model))).map((tag) => ({ host, namespace, model, tag })));
    out.push(...tags.flat());
  }
  return out;
}

async function build(app: App): Promise<Catalog> {
  const sizes = new Map<string, Promise<number | null>>();
  let answering: Map<string, string> | null = null;
  const models = await collect(app, await allRefs(app), async (ref, present) => {
    // The first host folder (lookup order) holding a name answers pulls of it; later ones are shadowed.
    if (!answering) {
      answering = new Map();
      for (const r of present) if (!answering.has(foldKey(r))) answering.set(foldKey(r), r.host);
    }
    const first = answering.get(foldKey(ref));
    return first && first !== ref.host ? first : null;
  }, sizes);
  let bytes = 0;
  let blobs = 0;
  for (const [, p] of sizes) {
    const s = await p;
    if (s !== null) {
      bytes += s;
      blobs++;
    }
  }
  const space = await app.driver.space?.().catch(() => null) ?? null;
  return { models, disk: { bytes, blobs, free: space?.free ?? null, total: space?.total ?? null } };
}

/** One repository of one host folder, as the catalog lists it; null when it has no tags. */
export async function modelEntry(app: App, host: string, namespace: string, model: string): Promise<ModelSummary | null> {
  const refs = (await app.driver.list(manifestDir(host, namespace, model)))
    .filter((tag) => isValidPart('tag', tag)).map((tag) => ({ host, namespace, model, tag }));
  const models = await collect(app, refs, async (ref) => {
    const answer = await app.manifests.find(ref.namespace, ref.model, ref.tag);
    return answer && answer.host !== ref.host ? answer.host : null;
  }, new Map());
  return models[0] ?? null;
}
