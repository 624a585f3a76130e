// The manifest shape ollama uses (Docker image manifest v2 schema 2 with ollama media types).
// Bytes are always stored and served verbatim; this only reads them.
import { RegistryError } from '../errors.js';
import { isDigest } from '../names.js';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MANIFEST_TYPES = [DOCKER_MANIFEST, OCI_MANIFEST];

/** Manifests larger than this are refused, wherever they come from (ollama's are a few KB). */
export const MAX_MANIFEST_BYTES = 4 << 20;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  [extra: string]: unknown;
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config?: Descriptor;
  layers: Descriptor[];
}

/** Parse and check a manifest; MANIFEST_INVALID with a one-line reason otherwise. */
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
  if (o.mediaType !== undefined && !MANIFEST_TYPES.includes(o.mediaType as string)) {
    throw bad(`unsupported mediaType ${JSON.stringify(o.mediaType)}`);
  }
  if (!Array.isArray(o.layers)) throw bad('layers must be an array');
  const check = (d: unknown, where: string): Descriptor => {
    if (!d || typeof d !== 'object') throw bad(`${where} must be an object`);
    const x = d as Record<string, unknown>;
    if (typeof x.digest !== 'string' || !isDigest(x.digest)) throw bad(`${where} has an invalid digest (sha256: and 64 lowercase hex)`);
    if (typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0) throw bad(`${where} has an invalid size`);
    return x as unknown as Descriptor;
  };
  const layers = o.layers.map((l, i) => check(l, `layer ${i}`));
  // ollama allows an empty config digest (no config blob); treat it as absent.
  const cfg = o.config as Record<string, unknown> | undefined;
  const config = cfg && cfg.digest !== '' && cfg.digest !== undefined ? check(cfg, 'config') : undefined;
  return { schemaVersion: 2, mediaType: o.mediaType as string | undefined, config, layers };
}

/** Every blob digest a manifest needs (config first), without repeats. */
export function referencedDigests(m: Manifest): Descriptor[] {
  const seen = new Set<string>();
  const out: Descriptor[] = [];
  for (const d of [...(m.config ? [m.config] : []), ...m.layers]) {
    if (!seen.has(d.digest)) {
      seen.add(d.digest);
      out.push(d);
    }
  }
  return out;
}

/** Content-Type for stored bytes, even ones that no longer parse. */
export function manifestContentType(bytes: Buffer): string {
  try {
    const o = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    if (typeof o.mediaType === 'string' && MANIFEST_TYPES.includes(o.mediaType)) return o.mediaType;
  } catch {
    /* served verbatim anyway */
  }
  return DOCKER_MANIFEST;
}
