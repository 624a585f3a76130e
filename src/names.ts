// ollama's name grammar (types/model/name.go) and sha256 digests, checked before any
// value comes near a storage path.
import { RegistryError } from './errors.js';

export const DEFAULT_HOST = 'registry.ollama.ai';
export const DEFAULT_NAMESPACE = 'library';
export const DEFAULT_TAG = 'latest';

const PART_RULES = {
  host: { re: /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/, max: 350 },
  namespace: { re: /^[A-Za-z0-9_][A-Za-z0-9_-]*$/, max: 80 },
  model: { re: /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, max: 80 },
  // ollama caps tags at 80 characters; OCI tools may push up to 128 with the same grammar.
  tag: { re: /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, max: 128 },
} as const;

export type NamePart = keyof typeof PART_RULES;

export function isValidPart(kind: NamePart, value: string): boolean {
  const rule = PART_RULES[kind];
  return value.length >= 1 && value.length <= rule.max && rule.re.test(value);
}

export function checkPart(kind: NamePart, value: string): string {
  if (!isValidPart(kind, value)) {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    throw new RegistryError(kind === 'tag' ? 'TAG_INVALID' : 'NAME_INVALID',
      `invalid ${kind} ${JSON.stringify(shown)}: use letters, digits, '_'${kind === 'namespace' ? ", '-'" : kind === 'host' ? ", '-', '.', ':'" : ", '-', '.'"}; ` +
      `start with a letter, digit or '_'; at most ${PART_RULES[kind].max} characters`);
  }
  return value;
}

export interface ModelName {
  host: string;
  namespace: string;
  model: string;
  tag: string;
}

/**
 * Parse a name as users type it (`gemma2:2b`, `hf.co/user/repo:Q4_K_M`), with ollama's
 * algorithm (ParseNameBare + defaults) and its validity rules. A scheme prefix is dropped,
 * as ollama's DisplayShortest does.
 */
export function parseModelName(input: string): ModelName {
  let rest = input;
  const scheme = rest.indexOf('://');
  if (scheme >= 0) rest = rest.slice(scheme + 3);
  let tag = '';
  const colon = rest.lastIndexOf(':');
  const hasTag = colon > rest.lastIndexOf('/');
  if (hasTag) {
    tag = rest.slice(colon + 1) || '!MISSING!';
    rest = rest.slice(0, colon);
  }
  let host = '';
  let namespace = '';
  let model: string;
  const s1 = rest.lastIndexOf('/');
  if (s1 < 0) {
    model = rest;
  } else {
    model = rest.slice(s1 + 1);
    rest = rest.slice(0, s1);
    const s2 = rest.lastIndexOf('/');
    if (s2 < 0) namespace = rest;
    else {
      namespace = rest.slice(s2 + 1);
      host = rest.slice(0, s2);
      if (host === '') host = '!MISSING!';
    }
    if (namespace === '') namespace = '!MISSING!';
  }
  const name: ModelName = {
    host: host || DEFAULT_HOST,
    namespace: namespace || DEFAULT_NAMESPACE,
    model,
    tag: tag || DEFAULT_TAG,
  };
  for (const kind of ['host', 'namespace', 'model', 'tag'] as const) {
    if (!isValidPart(kind, name[kind])) {
      throw new RegistryError('NAME_INVALID', `invalid model name ${JSON.stringify(input)}: bad ${kind} ${JSON.stringify(name[kind])}`);
    }
  }
  return name;
}

export function formatName(n: ModelName): string {
  return `${n.host}/${n.namespace}/${n.model}:${n.tag}`;
}

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** Returns the 64 lowercase hex chars of a `sha256:<hex>` digest, or throws DIGEST_INVALID. */
export function digestHex(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m) {
    const shown = digest.length > 80 ? `${digest.slice(0, 80)}…` : digest;
    throw new RegistryError('DIGEST_INVALID', `invalid digest ${JSON.stringify(shown)}: expected sha256: and 64 lowercase hex characters`);
  }
  return m[1]!;
}

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** ollama's file name form (`sha256-<hex>`; old/Windows copies may use `sha256:<hex>`) → digest. */
export function digestFromBlobFileName(file: string): string | undefined {
  const m = /^sha256[-:]([0-9a-f]{64})$/.exec(file);
  return m ? `sha256:${m[1]}` : undefined;
}

/** Tags with a special meaning to ollama's ParseRef (protocol §1.7): never stored by a push. */
export function isReservedTag(tag: string): boolean {
  const t = tag.toLowerCase();
  return t === 'local' || t === 'cloud' || t.endsWith('-cloud');
}
