// Make ollama models in code, in ollama's on-disk layout (blobs/ + manifests/), with
// deterministic contents so tests can compare bytes. Large blobs are generated and hashed
// in chunks, never held in memory.
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

export interface LayerSpec {
  mediaType: string;
  /** Deterministic pseudo-random bytes of this size (ignored when content is given). */
  size?: number;
  content?: string | Buffer;
  /** Varies the pseudo-random bytes. */
  seed?: string;
  from?: string;
  /** A tensor or model-file layer's `name` (safetensors models). */
  name?: string;
}

export interface ModelSpec {
  host?: string;
  namespace?: string;
  model: string;
  tag?: string;
  layers?: LayerSpec[];
  /** Merged over the default config fields (model_format, model_family, …, architecture, os). */
  config?: object;
}

export interface BlobInfo {
  digest: string;
  size: number;
  mediaType: string;
}

export interface MadeModel {
  manifestPath: string;
  manifestBytes: Buffer;
  manifestDigest: string;
  blobs: BlobInfo[];
}

export const sha256Hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(p, { highWaterMark: 1 << 20 }), async function (src) {
    for await (const c of src) h.update(c as Buffer);
  });
  return `sha256:${h.digest('hex')}`;
}

/** Deterministic bytes: AES-256-CTR keystream keyed by the seed (fast, and differs per seed). */
function* pseudoRandom(size: number, seed: string): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(1 << 20);
  for (let off = 0; off < size; off += zeros.length) {
    yield cipher.update(zeros.subarray(0, Math.min(zeros.length, size - off)));
  }
}

/** Write one blob into <dir>/blobs under its digest. */
export async function writeBlob(dir: string, layer: Pick<LayerSpec, 'size' | 'content' | 'seed'>): Promise<{ digest: string; size: number }> {
  const blobs = path.join(dir, 'blobs');
  await mkdir(blobs, { recursive: true });
  if (layer.content !== undefined) {
    const buf = Buffer.from(layer.content);
    const digest = `sha256:${sha256Hex(buf)}`;
    await writeFile(path.join(blobs, `sha256-${digest.slice(7)}`), buf);
    return { digest, size: buf.length };
  }
  const size = layer.size ?? 1000;
  const tmp = path.join(blobs, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const h = createHash('sha256');
  const gen = pseudoRandom(size, layer.seed ?? `seed-${size}`);
  await pipeline(async function* () {
    for (const chunk of gen) {
      h.update(chunk);
      yield chunk;
    }
  }, createWriteStream(tmp, { highWaterMark: 1 << 20 }));
  const digest = `sha256:${h.digest('hex')}`;
  await rename(tmp, path.join(blobs, `sha256-${digest.slice(7)}`));
  return { digest, size };
}

const DEFAULT_LAYERS: LayerSpec[] = [
  { mediaType: 'application/vnd.ollama.image.model', size: 1000 },
  { mediaType: 'application/vnd.ollama.image.template', content: '{{ .System }} {{ .Prompt }}' },
  { mediaType: 'application/vnd.ollama.image.params', content: '{"stop":["<|eot|>"],"temperature":0.7}' },
  { mediaType: 'application/vnd.ollama.image.license', content: 'Test license, do what you like.' },
];

export async function makeModel(dir: string, spec: ModelSpec): Promise<MadeModel> {
  const host = spec.host ?? 'registry.ollama.ai';
  const namespace = spec.namespace ?? 'library';
  const tag = spec.tag ?? 'latest';
  const blobs: BlobInfo[] = [];
  const layers: Array<Record<string, unknown>> = [];
  for (const [i, l] of (spec.layers ?? DEFAULT_LAYERS).entries()) {
    const { digest, size } = await writeBlob(dir, { ...l, seed: l.seed ?? `${spec.model}:${i}:${l.size ?? 0}` });
    blobs.push({ digest, size, mediaType: l.mediaType });
    layers.push({ mediaType: l.mediaType, digest, size, ...(l.from ? { from: l.from } : {}), ...(l.name ? { name: l.name } : {}) });
  }
  const config = Buffer.from(JSON.stringify({
    model_format: 'gguf', model_family: 'llama', model_families: ['llama'], model_type: '1.2B', file_type: 'Q4_K_M',
    architecture: 'amd64', os: 'linux', ...spec.config,
  }) + '\n');
  const cfg = await writeBlob(dir, { content: config });
  blobs.push({ ...cfg, mediaType: 'application/vnd.docker.container.image.v1+json' });
  const manifestBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: cfg.digest, size: cfg.size },
    layers,
  }));
  const manifestPath = path.join(dir, 'manifests', host, namespace, spec.model, tag);
  await mkdir(path.dirname(manifestPath), { recursive: true });
  await writeFile(manifestPath, manifestBytes);
  return { manifestPath, manifestBytes, manifestDigest: `sha256:${sha256Hex(manifestBytes)}`, blobs };
}

/** `count` small models of mixed families, quantizations and namespaces (the catalog's 500-model page and its bench). */
export async function makeManyModels(dir: string, count: number): Promise<void> {
  const families = ['llama', 'gemma2', 'qwen2', 'phi3', 'mistral'];
  for (let i = 0; i < count; i++) {
    await makeModel(dir, {
      namespace: i % 7 === 0 ? 'team' : 'library', model: `model-${String(i).padStart(3, '0')}`, tag: i % 3 === 0 ? 'q8_0' : 'latest',
      config: { model_family: families[i % 5], model_type: `${(i % 70) + 1}B`, file_type: i % 2 ? 'Q4_K_M' : 'Q8_0' },
      layers: [{ mediaType: 'application/vnd.ollama.image.model', size: 100 + i }],
    });
  }
}
