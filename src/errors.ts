// The one error table. Every failure a client can see is a RegistryError with a code from here;
// http/respond.ts is the one place that turns any thrown value into a response.

export const ERRORS = {
  BAD_REQUEST: 400,
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 404,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  NOT_FOUND: 404,
  SIZE_INVALID: 400,
  TAG_INVALID: 400,
  PAGINATION_NUMBER_INVALID: 400,
  RANGE_INVALID: 416,
  REQUEST_TIMEOUT: 408,
  TOO_LARGE: 413,
  UNSUPPORTED: 405,
  UNAUTHORIZED: 401,
  DENIED: 403,
  PRECONDITION_FAILED: 412,
  TOOMANYREQUESTS: 429,
  HEADERS_TOO_LARGE: 431,
  MISDIRECTED: 421,
  INSUFFICIENT_STORAGE: 507,
  UPSTREAM_FAILED: 502,
  UNAVAILABLE: 503,
  /** The object store (S3) is down, frozen or refusing the registry: nothing was changed. */
  STORE_UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail?: unknown;
  /** Extra response headers (e.g. WWW-Authenticate, Content-Range for 416). */
  readonly headers?: Record<string, string>;

  constructor(code: ErrorCode, message: string, opts: { detail?: unknown; headers?: Record<string, string>; cause?: unknown } = {}) {
    // Messages are shown raw by the ollama CLI: keep them on one line.
    super(message.replace(/[\r\n]+/g, ' '), opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.status = ERRORS[code];
    this.detail = opts.detail;
    this.headers = opts.headers;
  }
}

export function isRegistryError(e: unknown): e is RegistryError {
  return e instanceof RegistryError;
}

/** Errors from the OS that mean "the disk is full" become one clear, typed error. */
export function fromFsError(e: unknown, what: string): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RegistryError('INSUFFICIENT_STORAGE', `no space left on the registry's disk while writing ${what}`, { cause: e });
  }
  return e;
}
