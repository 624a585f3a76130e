// The `limits:` section of the config: what one client may hold of the server (connections,
// time to send a request, password checks), and its part of the settings table.
import { duration, setting, wholeNumber, type Setting } from './config-values.js';

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

// requestTimeout 0 turns the whole-request cap off; the other waits must stay bounded.
const wait = duration('a duration such as 500ms, 30s or 2m', { zero: false });
const count = wholeNumber(1, 'a whole number >= 1');

/** The `limits.*` rows of the settings table (README "Limits"). */
export const LIMIT_SETTINGS: Setting[] = [
  setting({ key: 'limits.headersTimeout', default: '20s', schema: wait, set: (c, v) => { c.limits.headersTimeoutSeconds = v; },
    doc: 'request headers not all in: `408` and the connection is closed' }),
  setting({ key: 'limits.bodyIdleTimeout', default: '30s', schema: wait, set: (c, v) => { c.limits.bodyIdleTimeoutSeconds = v; },
    doc: 'a request body that sends no byte for this long (uploads too): `408`, closed' }),
  setting({ key: 'limits.requestTimeout', default: '60s', schema: duration('a duration such as 500ms, 30s or 2m'), set: (c, v) => { c.limits.requestTimeoutSeconds = v; },
    doc: 'a request, body included, not all in after this (blob uploads exempt, they only have the idle timeout; `0` = off): `408`' }),
  // Go keeps idle connections for 90 s; Node's 5 s default makes ollama's 16 parts churn sockets.
  setting({ key: 'limits.keepAliveTimeout', default: '65s', schema: wait, set: (c, v) => { c.limits.keepAliveTimeoutSeconds = v; },
    doc: 'an idle keep-alive connection is closed (Go clients keep theirs 90 s)' }),
  setting({ key: 'limits.maxConnections', default: 2000, schema: count, set: (c, v) => { c.limits.maxConnections = v; },
    doc: 'more open connections: `503 UNAVAILABLE` with `Retry-After`, closed (on TLS: just closed)' }),
  setting({ key: 'limits.maxConnectionsPerAddress', default: 200, schema: count, set: (c, v) => { c.limits.maxConnectionsPerAddress = v; },
    doc: 'more from one client address: `429 TOOMANYREQUESTS` with `Retry-After`, closed' }),
  setting({ key: 'limits.passwordWorkers', default: 1, schema: wholeNumber(1, 'a whole number >= 1', 64), set: (c, v) => { c.limits.passwordWorkers = v; },
    doc: 'threads that run scrypt for password checks, apart from the file-read pool' }),
  setting({ key: 'limits.passwordQueue', default: 64, schema: count, set: (c, v) => { c.limits.passwordQueue = v; },
    doc: 'password checks waiting for a thread; more: `503` with `Retry-After`' }),
  setting({ key: 'limits.loginFailuresPerUser', default: 10, schema: count, set: (c, v) => { c.limits.loginFailuresPerUser = v; },
    doc: 'failed sign-ins for one user name (from anywhere) …' }),
  setting({ key: 'limits.loginFailuresPerAddress', default: 30, schema: count, set: (c, v) => { c.limits.loginFailuresPerAddress = v; },
    doc: '… or from one address (any names) …' }),
  setting({ key: 'limits.loginLockout', default: '60s', schema: wait, set: (c, v) => { c.limits.loginLockoutSeconds = v; },
    doc: '… then `429 TOOMANYREQUESTS` with `Retry-After`, without checking the password, until this long after the last failure' }),
];
