// The `limits:` section of the config: what one client may hold of the server (connections,
// time to send a request, password checks). Parsed here so config.ts stays one table of keys.
import { parseDuration } from './units.js';

export interface Limits {
  /** A request's headers must arrive within this (else 408). */
  headersTimeoutSeconds: number;
  /** A whole request, body included, must arrive within this; blob uploads are exempt (0: off). */
  requestTimeoutSeconds: number;
  /** A request body that sends nothing for this long is cut with 408 (blob uploads included). */
  bodyIdleTimeoutSeconds: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutSeconds: number;
  /** Open connections in total; more are refused with 503. */
  maxConnections: number;
  /** Open connections from one address; more are refused with 429. */
  maxConnectionsPerAddress: number;
  /** Threads that check passwords (scrypt), apart from the pool that file reads use. */
  passwordWorkers: number;
  /** Password checks waiting for a thread; more are refused with 503. */
  passwordQueue: number;
  /** Failed sign-ins for one user name, then 429 until the lockout has passed. */
  loginFailuresPerUser: number;
  /** Failed sign-ins from one address, then 429 until the lockout has passed. */
  loginFailuresPerAddress: number;
  loginLockoutSeconds: number;
}

export function defaultLimits(): Limits {
  return {
    headersTimeoutSeconds: 20,
    requestTimeoutSeconds: 60,
    bodyIdleTimeoutSeconds: 30,
    // Go keeps idle connections for 90 s; Node's 5 s default makes ollama's 16 parts churn sockets.
    keepAliveTimeoutSeconds: 65,
    maxConnections: 2000,
    maxConnectionsPerAddress: 200,
    passwordWorkers: 1,
    passwordQueue: 64,
    loginFailuresPerUser: 10,
    loginFailuresPerAddress: 30,
    loginLockoutSeconds: 60,
  };
}

const DURATIONS: Record<string, keyof Limits> = {
  headersTimeout: 'headersTimeoutSeconds',
  requestTimeout: 'requestTimeoutSeconds',
  bodyIdleTimeout: 'bodyIdleTimeoutSeconds',
  keepAliveTimeout: 'keepAliveTimeoutSeconds',
  loginLockout: 'loginLockoutSeconds',
};
const COUNTS: Array<keyof Limits> = ['maxConnections', 'maxConnectionsPerAddress', 'passwordWorkers', 'passwordQueue', 'loginFailuresPerUser', 'loginFailuresPerAddress'];

/** Set `limits.<name>`; returns why the value is refused, or null when it was set. */
export function applyLimit(limits: Limits, name: string, raw: unknown): string | null {
  const field = DURATIONS[name];
  if (field) {
    const s = parseDuration(raw);
    // requestTimeout 0 turns the whole-request cap off; the other waits must stay bounded.
    if (s === null || (s === 0 && name !== 'requestTimeout')) return `expected a duration such as 500ms, 30s or 2m, got ${JSON.stringify(raw)}`;
    limits[field] = s;
    return null;
  }
  if ((COUNTS as string[]).includes(name)) {
    const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) return `expected a whole number >= 1, got ${JSON.stringify(raw)}`;
    limits[name as keyof Limits] = n;
    return null;
  }
  return 'unknown setting';
}
