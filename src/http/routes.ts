// Parses /v2/... request paths into routes. Every name and digest is validated here, before a
// handler (and so before any storage path) sees it.
import { RegistryError } from '../errors.js';
import { checkPart, digestHex } from '../names.js';

export type V2Route =
  | { kind: 'ping' }
  | { kind: 'catalog' }
  // `invalid`: the tag is not valid; reads answer MANIFEST_UNKNOWN, a PUT this error (OCI).
  | { kind: 'manifest'; namespace: string; model: string; reference: string; invalid?: RegistryError }
  | { kind: 'referrers'; namespace: string; model: string; digest: string }
  | { kind: 'blob'; namespace: string; model: string; digest: string }
  | { kind: 'uploads'; namespace: string; model: string; id?: string }
  | { kind: 'tags'; namespace: string; model: string };

function decode(seg: string): string {
  try {
    return decodeURIComponent(seg);
  } catch {
    throw new RegistryError('NAME_INVALID', 'malformed percent-encoding in the request path');
  }
}

function repo(nameSegs: string[]): { namespace: string; model: string } {
  if (nameSegs.length !== 2) {
    throw new RegistryError('NAME_INVALID', `repository names here are <namespace>/<model> (e.g. library/gemma2), got ${nameSegs.length} path segment(s)`);
  }
  return { namespace: checkPart('namespace', nameSegs[0]!), model: checkPart('model', nameSegs[1]!) };
}

/** The route of a /v2 path (without query), or null when the path is not a registry route. */
export function parseV2Path(pathname: string): V2Route | null {
  if (pathname === '/v2' || pathname === '/v2/') return { kind: 'ping' };
  if (!pathname.startsWith('/v2/')) return null;
  const segs = pathname.slice(4).split('/').map(decode);
  const n = segs.length;
  if (n === 1 && segs[0] === '_catalog') return { kind: 'catalog' };
  if (n >= 4 && segs[n - 3] === 'blobs' && segs[n - 2] === 'uploads') {
    const id = segs[n - 1]!;
    return { kind: 'uploads', ...repo(segs.slice(0, n - 3)), id: id === '' ? undefined : id };
  }
  if (n >= 3 && segs[n - 2] === 'blobs' && segs[n - 1] === 'uploads') {
    return { kind: 'uploads', ...repo(segs.slice(0, n - 2)) };
  }
  if (n >= 3 && segs[n - 2] === 'tags' && segs[n - 1] === 'list') return { kind: 'tags', ...repo(segs.slice(0, n - 2)) };
  if (n >= 3 && segs[n - 2] === 'manifests') {
    const name = repo(segs.slice(0, n - 2));
    const ref = segs[n - 1]!;
    if (ref.includes(':')) return { kind: 'manifest', ...name, reference: (digestHex(ref), ref) };
    try {
      return { kind: 'manifest', ...name, reference: checkPart('tag', ref) };
    } catch (e) {
      return { kind: 'manifest', ...name, reference: ref.slice(0, 200), invalid: e as RegistryError };
    }
  }
  if (n >= 3 && segs[n - 2] === 'referrers') {
    const name = repo(segs.slice(0, n - 2));
    const digest = segs[n - 1]!;
    digestHex(digest);
    return { kind: 'referrers', ...name, digest };
  }
  if (n >= 3 && segs[n - 2] === 'blobs') {
    const name = repo(segs.slice(0, n - 2));
    const digest = segs[n - 1]!;
    digestHex(digest);
    return { kind: 'blob', ...name, digest };
  }
  return null;
}
