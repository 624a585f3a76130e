// The manifest shapes the registry accepts: image manifests (Docker v2 schema 2, which ollama
// uses with its own layer types, and OCI), and lists of manifests (OCI image index, Docker
// manifest list, ollama's manifest list). Bytes are always stored and served verbatim; this
// only reads them.
import { RegistryError } from '../../errors.js';
import { isDigest } from '../../names.js';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
/** ollama's manifest list (ollama PR #16590, unreleased): children picked by `runner`/`format`, fetched as blobs. */
export const OLLAMA_LIST = 'application/vnd.ollama.manifest.list.v2+json';
export const IMAGE_TYPES = [DOCKER_MANIFEST, OCI_MANIFEST];
export const LIST_TYPES = [OCI_INDEX, DOCKER_LIST, OLLAMA_LIST];
export const MANIFEST_TYPES = [...IMAGE_TYPES, ...LIST_TYPES];

/** Manifests larger than this are refused, wherever they come from (ollama's are a few KB). */
export const MAX_MANIFEST_BYTES = 4 << 20;
/** A config blob larger than this is not read for its fields. */
export const MAX_CONFIG_BYTES = 1 << 20;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  [extra: string]: unknown;
}

export interface Manifest {
  schemaVersion: number;
  /** The type it is served with: its own `mediaType`, else inferred from its shape as distribution does. */
  mediaType: string;
  kind: 'image' | 'list';
  config?: Descriptor;
  /** Image manifests: the layers ([] for a list). */
  layers: Descriptor[];
  /** Lists: the child manifests ([] for an image). */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** An object's `mediaType`, or the type its shape implies when it has none (OCI allows leaving it out). */
function typeOf(o: Record<string, unknown>): string | undefined {
  if (typeof o.mediaType === 'string') return o.mediaType;
  if (o.mediaType !== undefined) return undefined;
  if (Array.isArray(o.manifests)) return OCI_INDEX;
  if (o.config !== undefined || Array.isArray(o.layers)) return OCI_MANIFEST;
  return undefined;
}

/** Parse and check a manifest or a list; MANIFEST_INVALID with a one-line reason otherwise. */
export function parseManifest(bytes: Buffer): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new RegistryError('MANIFEST_INVALID', `manifest is not valid JSON: ${(e as Error).message}`);
  }
  const bad = (why: string) => new RegistryError('MANIFEST_INVALID', `manifest invalid: ${why}`);
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw bad('not a JSON object');
  const o = m as Record<string, unknown>;
  if (o.schemaVersion !== 2) throw bad('schemaVersion must be 2');
  const mediaType = typeOf(o);
  if (!mediaType || !MANIFEST_TYPES.includes(mediaType)) throw bad(`unsupported mediaType ${JSON.stringify(o.mediaType ?? null)}`);
  const check = (d: unknown, where: string): Descriptor => {
    if (!d || typeof d !== 'object') throw bad(`${where} must be an object`);
    const x = d as Record<string, unknown>;
    if (typeof x.digest !== 'string' || !isDigest(x.digest)) throw bad(`${where} has an invalid digest (sha256: and 64 lowercase hex)`);
    if (typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0) throw bad(`${where} has an invalid size`);
    if (x.mediaType !== undefined && typeof x.mediaType !== 'string') throw bad(`${where} has an invalid mediaType`);
    return x as unknown as Descriptor;
  };
  const subject = o.subject === undefined ? undefined : check(o.subject, 'subject');
  const artifactType = typeof o.artifactType === 'string' ? o.artifactType : undefined;
  const annotations = o.annotations && typeof o.annotations === 'object' && !Array.isArray(o.annotations) ? o.annotations as Record<string, string> : undefined;
  if (LIST_TYPES.includes(mediaType)) {
    if (!Array.isArray(o.manifests)) throw bad('manifests must be an array');
    const manifests = o.manifests.map((c, i) => check(c, `manifest ${i}`));
    return { schemaVersion: 2, mediaType, kind: 'list', layers: [], manifests, subject, artifactType, annotations };
  }
  if (!Array.isArray(o.layers)) throw bad('layers must be an array');
  const layers = o.layers.map((l, i) => check(l, `layer ${i}`));
  // ollama allows an empty config digest (no config blob); treat it as absent.
  const cfg = o.config as Record<string, unknown> | undefined;
  const config = cfg && cfg.digest !== '' && cfg.digest !== undefined ? check(cfg, 'config') : undefined;
  return { schemaVersion: 2, mediaType, kind: 'image', config, layers, manifests: [], subject, artifactType, annotations };
}

/**
 * Every digest a manifest needs, without repeats: config and layers of an image, the child
 * manifests of a list. A child's own layers are found by reading the child (childManifests).
 */
export function referencedDigests(m: Manifest): Descriptor[] {
  const seen = new Set<string>();
  const out: Descriptor[] = [];
  for (const d of [...(m.config ? [m.config] : []), ...m.layers, ...m.manifests]) {
    if (!seen.has(d.digest)) {
      seen.add(d.digest);
      out.push(d);
    }
  }
  return out;
}

/** The children of a list: manifests stored by digest (OCI) or as blobs (ollama's list). */
export function childManifests(m: Manifest): Descriptor[] {
  return m.manifests;
}

/** Content-Type for stored bytes, even ones that no longer parse. */
export function manifestContentType(bytes: Buffer): string {
  try {
    const o = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const t = o && typeof o === 'object' ? typeOf(o) : undefined;
    if (t && MANIFEST_TYPES.includes(t)) return t;
  } catch {
    /* served verbatim anyway */
  }
  return DOCKER_MANIFEST;
}
