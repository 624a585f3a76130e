// The S3 client settings and the error mapping the S3 driver shares between its files.
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { RegistryError } from '../errors.js';

/** Bounds on every request to the store: a dead or frozen store fails in seconds, never hangs. */
export interface S3Timeouts {
  /** TCP connect (ms). */
  connectMs?: number;
  /** A socket that moves no byte for this long is dropped (ms): bounds a slow read without bounding its length. */
  idleMs?: number;
  /** From sending a request to its response headers, body upload included (ms): at most one part (16 MiB) goes up per request. */
  responseMs?: number;
  /** Attempts per request, the first included (the SDK's standard retry with backoff). */
  attempts?: number;
  /** All attempts of one small request (not a part upload), until its response headers (ms). */
  deadlineMs?: number;
  /** Sockets open to the store at once; more requests wait (inside responseMs) for one. */
  maxSockets?: number;
}

export interface S3ClientOptions {
  region?: string;
  forcePathStyle?: boolean;
  /** Explicit credentials, for tests; otherwise the SDK's usual chain (environment, shared files, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  timeouts?: S3Timeouts;
}

export function s3Client(o: S3ClientOptions, endpoint: string | undefined): S3Client {
  // The SDK warns on every command that its releases after January 2027 need node 22; the versions
  // pinned here run on node 20, so the warning only adds noise to every CLI run on S3.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const t = o.timeouts ?? {};
  const config: S3ClientConfig = {
    endpoint,
    region: o.region ?? 'us-east-1',
    forcePathStyle: o.forcePathStyle ?? true,
    credentials: o.credentials,
    // Ceph and Swift refuse the SDK's default aws-chunked uploads with a trailing checksum.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: t.attempts ?? 3,
    requestHandler: {
      connectionTimeout: t.connectMs ?? 5_000,
      socketTimeout: t.idleMs ?? 15_000,
      requestTimeout: t.responseMs ?? 60_000,
      throwOnRequestTimeout: true,
      httpAgent: { keepAlive: true, maxSockets: t.maxSockets ?? 64 },
      httpsAgent: { keepAlive: true, maxSockets: t.maxSockets ?? 64 },
    },
  };
  return new S3Client(config);
}

export function s3Status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

export function s3ErrorName(e: unknown): string | undefined {
  return (e as { name?: string; Code?: string } | undefined)?.name;
}

const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'EPIPE', 'ECONNABORTED']);
// The store answers, but the registry cannot use it: a wrong bucket, key or clock, or no credentials, is an outage too.
const REFUSED = new Set(['NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'RequestTimeTooSkewed', 'CredentialsProviderError']);

/** Whether `e` means the store cannot be used right now (down, frozen, overloaded, refusing us), not "this key". */
export function isStoreOutage(e: unknown): boolean {
  if (e instanceof RegistryError) return false;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const name = s3ErrorName(e);
  const status = s3Status(e) ?? 0;
  return NETWORK.has(code ?? '') || name === 'TimeoutError' || REFUSED.has(name ?? '') || status >= 500;
}

/** A store outage becomes STORE_UNAVAILABLE (503) with a one-line message; anything else is returned as is. */
export function storeError(e: unknown, store: string): unknown {
  if (!isStoreOutage(e)) return e;
  // Say what happened once: the network code, the S3 error name, and a message the SDK did not make up.
  const message = (e as Error).message?.split('\n')[0]?.slice(0, 200);
  const said = [(e as NodeJS.ErrnoException).code, s3ErrorName(e), message === 'UnknownError' ? undefined : message];
  const what = said.filter((w, i): w is string => !!w && w !== 'Error' && !said.slice(i + 1).some((l) => l?.includes(w))).join(': ') || 'no answer';
  return new RegistryError('STORE_UNAVAILABLE', `the object store (${store}) is unavailable: ${what}`, { cause: e, headers: { 'Retry-After': '5' } });
}

/**
 * Runs one request to the store, with outages turned into STORE_UNAVAILABLE. With `deadlineMs`,
 * the request (every attempt) is aborted when it has no response by then; a response body that
 * is still streaming afterwards is not cut (the socket's idle timeout bounds it).
 */
export async function storeCall<T>(store: string, request: (o: { abortSignal?: AbortSignal }) => Promise<T>, deadlineMs?: number): Promise<T> {
  const abort = deadlineMs ? new AbortController() : undefined;
  const timer = abort && setTimeout(() => abort.abort(), deadlineMs);
  try {
    return await request({ abortSignal: abort?.signal });
  } catch (e) {
    if (abort?.signal.aborted) {
      throw new RegistryError('STORE_UNAVAILABLE', `the object store (${store}) is unavailable: no answer within ${deadlineMs! / 1000} s`, { cause: e, headers: { 'Retry-After': '5' } });
    }
    throw storeError(e, store);
  } finally {
    clearTimeout(timer);
  }
}
