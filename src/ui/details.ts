// One tag in detail, for the model page: config fields, layers and the text layers (template,
// system prompt, parameters, messages, licenses), each capped so a huge license stays cheap.
import type { App } from '../app.js';
import { RegistryError } from '../errors.js';
import { checkPart } from '../names.js';
import { readGgufInfo } from './gguf.js';
import { modelEntry, readBlobHead, summarise } from './catalog.js';
import { layerKind, textKind } from './artifact.js';
import { childManifests, parseManifest, referencedDigests } from '../registry/manifests/manifest-format.js';
import { readBlobManifest } from '../registry/manifests/manifest-tree.js';
import type { LayerInfo, ModelDetails, TextLayer } from './client/api.js';

export type { LayerInfo, ModelDetails };

/** Text layers are shown up to this many bytes; the rest is a link to the blob. */
export const TEXT_CAP = 64 * 1024;
const GGUF_HEAD = 512 * 1024;
const nested = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {});

/** Decode capped bytes, dropping a character cut in half at the cap. */
function decode(bytes: Buffer, truncated: boolean): string {
  let s = bytes.toString('utf8');
  if (truncated && s.endsWith('\uFFFD')) s = s.slice(0, -1);
  return s;
}

async function textLayer(app: App, digest: string, size: number): Promise<TextLayer> {
  const head = await readBlobHead(app, digest, TEXT_CAP);
  if (!head) return { digest, size, text: '', truncated: false, missing: true };
  const truncated = head.size > head.bytes.length;
  return { digest, size: head.size, text: decode(head.bytes, truncated), truncated, missing: false };
}

/** Config values worth showing: scalars and string lists, no nested objects (rootfs, draft). */
function plainValues(values: Record<string, unknown>): Record<string, string | number | boolean | string[]> {
  const out: Record<string, string | number | boolean | string[]> = {};
  for (const [k, v] of Object.entries(values)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = typeof v === 'string' ? v.slice(0, 1000) : v;
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) out[k] = (v as string[]).slice(0, 50);
  }
  return out;
}

export async function modelDetails(app: App, host: string, namespace: string, model: string, tagName: string | null): Promise<ModelDetails> {
  checkPart('host', host);
  checkPart('namespace', namespace);
  checkPart('model', model);
  if (tagName !== null) checkPart('tag', tagName);
  const entry = await modelEntry(app, host, namespace, model);
  if (!entry) throw new RegistryError('NAME_UNKNOWN', `${host}/${namespace}/${model} is not in this registry`);
  const tag = tagName === null
    ? entry.tags.find((t) => t.tag === 'latest') ?? entry.tags[0]!
    : entry.tags.find((t) => t.tag === tagName);
  if (!tag) throw new RegistryError('MANIFEST_UNKNOWN', `${host}/${namespace}/${model} has no tag ${tagName}`);
  const stored = await app.manifests.read({ host, namespace, model, tag: tag.tag });
  const got = stored && await summarise(app, stored, new Map(), tag.shadowedBy);
  if (!stored || !got) throw new RegistryError('MANIFEST_UNKNOWN', `${host}/${namespace}/${model}:${tag.tag} was removed`);
  const { manifest, config } = got;
  const details: ModelDetails = {
    model: entry,
    tag,
    manifest: { digest: stored.digest, id: stored.digest.slice(7, 19), size: stored.bytes.length, mediaType: stored.mediaType, modified: tag.modified },
    config: null,
    contextLength: null,
    layers: [],
    children: [],
    texts: { template: null, system: null, params: null, messages: null, licenses: [] },
  };
  if (!manifest) return details;
  if (manifest.config) {
    const size = await app.blobs.size(manifest.config.digest);
    // docker model and ModelPack configs keep their facts one level down, under "config".
    const values = config ? { ...plainValues(config.values), ...plainValues(nested(config.values.config)) } : {};
    details.config = { digest: manifest.config.digest, size: manifest.config.size, present: size !== null, values };
  }
  for (const c of childManifests(manifest)) {
    const child = await readBlobManifest(app.driver, c.digest) ?? (await app.manifests.find(namespace, model, c.digest).then((m) => m && { manifest: parseManifest(m.bytes) }).catch(() => null));
    const p = c.platform && typeof c.platform === 'object' ? c.platform as Record<string, unknown> : null;
    details.children.push({
      digest: c.digest, size: c.size, mediaType: typeof c.mediaType === 'string' ? c.mediaType : '', present: child !== null,
      runner: typeof c.runner === 'string' ? c.runner : null, format: typeof c.format === 'string' ? c.format : null,
      platform: p && typeof p.os === 'string' && typeof p.architecture === 'string' ? `${p.os}/${p.architecture}${typeof p.variant === 'string' ? `/${p.variant}` : ''}` : null,
      blobsSize: child ? referencedDigests(child.manifest).reduce((n, d) => n + d.size, 0) : null,
    });
  }
  let fromModel: number | null = null;
  for (const d of manifest.layers) {
    const mediaType = typeof d.mediaType === 'string' ? d.mediaType : '';
    const kind = layerKind(mediaType);
    const text = textKind(kind);
    const present = (await app.blobs.size(d.digest)) !== null;
    details.layers.push({ mediaType, kind, digest: d.digest, size: d.size, present, from: typeof d.from === 'string' ? d.from : null });
    const t = details.texts;
    if (text === 'template' && !t.template) t.template = await textLayer(app, d.digest, d.size);
    else if (text === 'system' && !t.system) t.system = await textLayer(app, d.digest, d.size);
    else if (text === 'messages' && !t.messages) t.messages = await textLayer(app, d.digest, d.size);
    else if (text === 'license') t.licenses.push(await textLayer(app, d.digest, d.size));
    else if (text === 'params' && !t.params) {
      const layer = await textLayer(app, d.digest, d.size);
      let values: Record<string, unknown> | null = null;
      try {
        const v = layer.truncated || layer.missing ? null : JSON.parse(layer.text) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) values = v as Record<string, unknown>;
      } catch { /* shown as text */ }
      t.params = { ...layer, values };
    } else if ((kind === 'model' || kind.startsWith('gguf')) && present && fromModel === null) {
      const head = await readBlobHead(app, d.digest, GGUF_HEAD);
      fromModel = head ? readGgufInfo(head.bytes)?.contextLength ?? null : null;
    }
  }
  if (config?.contextLength) details.contextLength = { value: config.contextLength, from: 'config' };
  else if (fromModel !== null) details.contextLength = { value: fromModel, from: 'model file' };
  return details;
}
