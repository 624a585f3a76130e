// One tag in detail, for the model page: config fields, layers and the text layers (template,
// system prompt, parameters, messages, licenses), each capped so a huge license stays cheap.
import type { App } from '../app.js';
import { RegistryError } from '../errors.js';
import { checkPart } from '../names.js';
import { readGgufInfo } from './gguf.js';
import { modelEntry, readBlobHead, summarise } from './catalog.js';
import type { LayerInfo, ModelDetails, TextLayer } from './client/api.js';

export type { LayerInfo, ModelDetails };

/** Text layers are shown up to this many bytes; the rest is a link to the blob. */
export const TEXT_CAP = 64 * 1024;
const GGUF_HEAD = 512 * 1024;
const OLLAMA_TYPE = 'application/vnd.ollama.image.';

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
    texts: { template: null, system: null, params: null, messages: null, licenses: [] },
  };
  if (!manifest) return details;
  if (manifest.config) {
    const size = await app.blobs.size(manifest.config.digest);
    details.config = { digest: manifest.config.digest, size: manifest.config.size, present: size !== null, values: config ? plainValues(config.values) : {} };
  }
  let fromModel: number | null = null;
  for (const d of manifest.layers) {
    const mediaType = typeof d.mediaType === 'string' ? d.mediaType : '';
    const kind = mediaType.startsWith(OLLAMA_TYPE) ? mediaType.slice(OLLAMA_TYPE.length) : mediaType;
    const present = (await app.blobs.size(d.digest)) !== null;
    details.layers.push({ mediaType, kind, digest: d.digest, size: d.size, present, from: typeof d.from === 'string' ? d.from : null });
    const t = details.texts;
    if ((kind === 'template' || kind === 'prompt') && !t.template) t.template = await textLayer(app, d.digest, d.size);
    else if (kind === 'system' && !t.system) t.system = await textLayer(app, d.digest, d.size);
    else if (kind === 'messages' && !t.messages) t.messages = await textLayer(app, d.digest, d.size);
    else if (kind === 'license') t.licenses.push(await textLayer(app, d.digest, d.size));
    else if (kind === 'params' && !t.params) {
      const layer = await textLayer(app, d.digest, d.size);
      let values: Record<string, unknown> | null = null;
      try {
        const v = layer.truncated || layer.missing ? null : JSON.parse(layer.text) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) values = v as Record<string, unknown>;
      } catch { /* shown as text */ }
      t.params = { ...layer, values };
    } else if (kind === 'model' && present && fromModel === null) {
      const head = await readBlobHead(app, d.digest, GGUF_HEAD);
      fromModel = head ? readGgufInfo(head.bytes)?.contextLength ?? null : null;
    }
  }
  if (config?.contextLength) details.contextLength = { value: config.contextLength, from: 'config' };
  else if (fromModel !== null) details.contextLength = { value: fromModel, from: 'model file' };
  return details;
}
