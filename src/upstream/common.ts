// What the upstream client and its sign-in share: the error type, the response shape, small bodies.
import type { Dispatcher } from 'undici';
import { VERSION } from '../version.js';

export const USER_AGENT = `ollama-registry/${VERSION}`;

/** `auth`: the upstream refused this registry's credentials (or gave it none it could use). */
export type UpstreamErrorKind = 'not-found' | 'status' | 'unreachable' | 'cut-off' | 'invalid' | 'auth';

/** A failure talking to an upstream. `status`/`body` carry the upstream's own answer when there was one. */
export class UpstreamError extends Error {
  constructor(readonly upstream: string, readonly kind: UpstreamErrorKind, message: string,
    readonly extra: { status?: number; body?: Buffer; contentType?: string; cause?: unknown } = {}) {
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

/** Read a small body whole (manifests, errors, tokens), refusing more than `max` bytes. */
export async function readSmall(res: Pick<UpstreamResponse, 'body'>, max = 64 << 10): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > max) {
      res.body.destroy();
      throw new Error(`response body larger than ${max} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export function oneLine(b: Buffer, max = 200): string {
  const s = b.toString('utf8').replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
