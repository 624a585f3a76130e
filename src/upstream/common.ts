// What the upstream client and its sign-in share: the error type, the response shape, small bodies.
import type { Dispatcher } from 'undici';
import { VERSION } from '../version.js';

export const USER_AGENT = `ollama-registry/${VERSION}`;

/**
 * `auth`: the upstream refused this registry's credentials (or gave it none it could use);
 * `refused`: it sent this registry somewhere it does not go (guard.ts).
 */
export type UpstreamErrorKind = 'not-found' | 'status' | 'unreachable' | 'cut-off' | 'invalid' | 'auth' | 'refused';

/** A failure talking to an upstream. `status`/`body` carry the upstream's own answer when there was one. */
export class UpstreamError extends Error {
  constructor(readonly upstream: string, readonly kind: UpstreamErrorKind, message: string,
    readonly extra: { status?: number; body?: Buffer; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'UpstreamError';
  }
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered, after redirects. */
  url: string;
}

export function header(h: UpstreamResponse['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Drop a body not wanted (the connection closes). undici's body emits an AbortError when destroyed
 * before its end: without a listener that is an uncaught exception, which would end the process. */
export function dropBody(res: Pick<UpstreamResponse, 'body'>): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

export class TooLarge extends Error {
  constructor(max: number) {
    super(`response body larger than ${max} bytes`);
  }
}

/** Read a small body whole (manifests, errors, tokens), refusing more than `max` bytes. */
export async function readSmall(res: { body: AsyncIterable<unknown> & { destroy(): unknown } }, max = 64 << 10): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > max) {
      res.body.destroy();
      throw new TooLarge(max);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** One line of printable text (no control, bidi or line-separator characters), at most `max` long. */
export function printable(text: string, max: number): string {
  const s = text.replace(/[\p{Cc}\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, ' ').replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * The reason an upstream gave, for a message a client sees: only the message of a JSON error
 * body (OCI `errors[0]`, or ollama's `error`), on one line and short; other bodies (HTML, text,
 * whatever a redirect target answered) are never echoed. ollama rewrites errors that contain
 * "unauthorized" or "access denied" into a message of its own that would hide the reason
 * (protocol §5, §2.5), so those words are replaced.
 */
export function upstreamReason(body: Buffer): string {
  let text = '';
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: Array<{ message?: unknown; code?: unknown }>; error?: unknown; details?: unknown };
    const e = Array.isArray(j?.errors) ? j.errors[0] : undefined;
    text = [e?.message, e?.code, j?.error, j?.details].find((v): v is string => typeof v === 'string' && v.trim() !== '') ?? '';
  } catch {
    /* not JSON: nothing of it is shown */
  }
  return printable(text, 300).replace(/unauthori[sz]ed/gi, 'not signed in').replace(/access denied/gi, 'refused');
}

/** `: reason` when the body has one, else nothing: for the end of an error message. */
export function withReason(body: Buffer): string {
  const r = upstreamReason(body);
  return r ? `: ${r}` : '';
}
