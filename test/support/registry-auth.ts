// Registering keys and users on a test registry, and getting tokens the way ollama and OCI
// tools do, for tests that speak the upload protocol with raw requests.
import { Writable } from 'node:stream';
import { hashPassword } from '../../src/auth/passwords.js';
import { parseKeyLine } from '../../src/auth/sshkey.js';
import type { Action } from '../../src/auth/store.js';
import { createLogger } from '../../src/log.js';
import { request } from './http.js';
import { newNonce, signTokenRequest, type OllamaKey } from './ollama-auth.js';
import { goEncodeValues } from './ollama-http.js';
import type { TestRegistry } from './server.js';

export async function allowKey(reg: TestRegistry, key: OllamaKey, namespace: string, actions: Action[] = ['pull', 'push']): Promise<void> {
  const k = parseKeyLine(key.publicKeyLine);
  await reg.app.auth.store.putKey({ key: `ssh-ed25519 ${k.blob}`, fingerprint: k.fingerprint, grants: [{ namespace, actions }] });
}

export async function addUser(reg: TestRegistry, name: string, password: string, namespace: string, actions: Action[] = ['pull', 'push']): Promise<void> {
  await reg.app.auth.store.putUser({ name, password: await hashPassword(password), grants: [{ namespace, actions }] });
}

/** The path and query of an ollama token request (Go-encoded, keys sorted). */
export function tokenRequestPath(reg: TestRegistry, scope: string, opts: { ts?: number; nonce?: string } = {}): string {
  const q = goEncodeValues([['service', reg.hostPort], ['scope', scope], ['ts', String(opts.ts ?? Math.floor(Date.now() / 1000))], ['nonce', opts.nonce ?? newNonce()]]);
  return `/v2/token?${q}`;
}

/** ollama's signed token request; returns the raw response. */
export function signedTokenRequest(reg: TestRegistry, key: OllamaKey, scope: string, opts: { ts?: number; nonce?: string } = {}) {
  const p = tokenRequestPath(reg, scope, opts);
  return request(reg.url, p, { headers: { Authorization: signTokenRequest(key, `${reg.url}${p}`) } });
}

export async function keyToken(reg: TestRegistry, key: OllamaKey, scope: string): Promise<string> {
  const r = await signedTokenRequest(reg, key, scope);
  if (r.status !== 200) throw new Error(`token request: ${r.status} ${r.text()}`);
  return r.json().token as string;
}

export async function basicToken(reg: TestRegistry, user: string, password: string, scope: string): Promise<string> {
  const r = await request(reg.url, `/v2/token?scope=${encodeURIComponent(scope)}&service=x`, { headers: { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } });
  if (r.status !== 200) throw new Error(`token request: ${r.status} ${r.text()}`);
  return r.json().token as string;
}

/** Replace the registry's logger with one that keeps JSON lines (info and up) for assertions. */
export function captureLog(reg: TestRegistry): () => Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  reg.app.log = createLogger({ level: 'info', format: 'json', destination: sink });
  return () => lines;
}
