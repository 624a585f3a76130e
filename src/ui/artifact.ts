// What kind of thing a manifest is, for the catalog: an ollama model, an ollama manifest list,
// a docker model artifact (`docker model`), a CNCF ModelPack model, or a container image.
// Each has its own pull command and keeps its facts (family, size, quantization) in its own
// config shape.
import { LIST_TYPES, OLLAMA_LIST, type Manifest } from '../registry/manifests/manifest-format.js';
import type { ArtifactKind } from './client/api.js';

const OLLAMA = 'application/vnd.ollama.image.';
const DOCKER_AI = 'application/vnd.docker.ai.';
const MODELPACK = 'application/vnd.cncf.model.';

export function artifactKind(m: Manifest): ArtifactKind {
  if (m.mediaType === OLLAMA_LIST) return 'ollama-list';
  if (LIST_TYPES.includes(m.mediaType)) return 'image';
  const types = [m.config?.mediaType, m.artifactType, ...m.layers.map((l) => l.mediaType)].filter((t): t is string => typeof t === 'string');
  if (types.some((t) => t.startsWith(OLLAMA))) return 'ollama';
  if (types.some((t) => t.startsWith(DOCKER_AI))) return 'docker-model';
  if (types.some((t) => t.startsWith(MODELPACK))) return 'modelpack';
  if (m.layers.some((l) => typeof l.mediaType === 'string' && /(\.tar|rootfs)/.test(l.mediaType))) return 'image';
  return 'ollama';
}

/** The short name of a layer's type: `model` for ollama's, `gguf.v3` for docker's, … */
export function layerKind(mediaType: string): string {
  for (const p of [OLLAMA, DOCKER_AI, MODELPACK]) if (mediaType.startsWith(p)) return mediaType.slice(p.length);
  return mediaType;
}

/** Layer kinds that hold a text the page shows, whatever runtime wrote them. */
export function textKind(kind: string): 'template' | 'system' | 'messages' | 'license' | 'params' | null {
  if (kind === 'template' || kind === 'prompt' || kind === 'chat.template.jinja' || kind.startsWith('chat.template')) return 'template';
  if (kind === 'system' || kind === 'messages' || kind === 'params') return kind;
  if (kind === 'license' || kind.startsWith('license')) return 'license';
  return null;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : null);
const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {});

export interface Facts {
  family: string | null;
  parameterSize: string | null;
  quantization: string | null;
  contextLength: number | null;
  /** os/architecture of a container image. */
  platform: string | null;
}

/** The facts of a config blob of any of the kinds (ollama's fields at the top, docker's and ModelPack's nested). */
export function configFacts(v: Record<string, unknown>): Facts {
  const inner = obj(v.config);
  const descriptor = obj(v.descriptor);
  const ctx = v.context_length ?? inner.context_size;
  return {
    family: str(v.model_family) ?? (Array.isArray(v.model_families) ? str(v.model_families[0]) : null) ?? str(descriptor.family) ?? str(inner.architecture),
    parameterSize: str(v.model_type) ?? str(inner.parameters) ?? str(inner.paramSize),
    quantization: str(v.file_type) ?? str(inner.quantization) ?? str(inner.precision),
    contextLength: typeof ctx === 'number' && Number.isSafeInteger(ctx) && ctx > 0 ? ctx : null,
    platform: typeof v.os === 'string' && typeof v.architecture === 'string' && !v.model_format ? `${v.os}/${v.architecture}` : null,
  };
}
