// Upload sessions across replicas. A session's bytes live in the scratch folder of the process
// that opened it, and its record (in the store, shared) names that process's URL. A PATCH, PUT,
// GET or DELETE of the session that reaches another replica (a load balancer, a retried part) is
// forwarded there: the same method, the body streamed through, the answer streamed back. The hop
// goes to /_internal/uploads/<namespace>/<model>/<id>, signed with the HMAC that fills use between
// processes (the secret shared through the store, fill-peer.ts); the owner checks it instead of a
// sign-in (the forwarding replica already checked the client's). The sha256 is checked by the
// owner before the blob is published, as for any commit, so bytes that were cut on the way are
// never visible. An owner that does not answer ends the session: BLOB_UPLOAD_UNKNOWN tells the
// client to start the upload again.
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { pipeline } from 'node:stream/promises';
import { RegistryError } from '../errors.js';
import { checkPeerSignature, PEER_HEADER, peerSecret, signPeerRequest } from '../registry/pull-through/fill-peer.js';
import type { Ctx } from './context.js';

export const UPLOAD_PEER_PATH = '/_internal/uploads/';
/** While the body streams: connect, and every pause in either direction. */
const IDLE_MS = 15_000;
/** After the whole body went: the owner's answer (a commit publishes the blob to the store first). */
const ANSWER_MS = 15 * 60_000;
const PASSED_ON = ['content-type', 'content-length', 'content-range', 'transfer-encoding', 'host', 'user-agent'];
const NOT_RETURNED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'date']);
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ID = /^[0-9a-f-]{36}$/;

export interface ForwardedUpload {
  namespace: string;
  model: string;
  id: string;
}

/** The owner URL from a session record (the store is input too): an http(s) origin, else null. */
function ownerOrigin(at: string): string | null {
  try {
    const u = new URL(at);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.username === '' && u.password === '' ? u.origin : null;
  } catch {
    return null;
  }
}

function lost(id: string, owner: string, why: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} is held by the registry process at ${owner}, which ${why}; start the upload again`);
}

/** Send this request on session `id` to the process that holds its bytes, and its answer back. */
export async function forwardUpload(ctx: Ctx<{ namespace: string; model: string }>, at: string, id: string): Promise<void> {
  const { app, req, res, url, route } = ctx;
  const owner = ownerOrigin(at);
  if (!owner) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} names no usable owner (${JSON.stringify(at.slice(0, 80))}); start the upload again`);
  const target = new URL(`${UPLOAD_PEER_PATH}${route.namespace}/${route.model}/${id}${url.search}`, owner);
  const method = req.method ?? 'GET';
  const headers: OutgoingHttpHeaders = {};
  for (const h of PASSED_ON) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
  const range = req.headers['content-range'] ?? '';
  headers[PEER_HEADER] = signPeerRequest(await peerSecret(app.driver), target.pathname + target.search, range, Date.now(), method);
  const lib = target.protocol === 'https:' ? https : http;
  await new Promise<void>((resolve, reject) => {
    let answered = false;
    let answerTimer: NodeJS.Timeout | undefined;
    const out = lib.request(target, { method, headers, agent: false, timeout: IDLE_MS }, (up) => {
      answered = true;
      clearTimeout(answerTimer);
      out.setTimeout(IDLE_MS);
      const back: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !NOT_RETURNED.has(k)) back[k] = v;
      res.writeHead(up.statusCode ?? 502, back);
      pipeline(up, res).then(resolve, reject);
    });
    const fail = (e: Error) => {
      clearTimeout(answerTimer);
      // Once the owner answers, the answer's own pipeline decides (an owner that refuses a part
      // before reading it all closes the request side; its answer still goes back whole).
      if (answered) return;
      const code = (e as NodeJS.ErrnoException).code;
      reject(lost(id, owner, code === 'ECONNREFUSED' ? 'refuses connections' : `does not answer (${e.message.split('\n')[0]!.slice(0, 120)})`));
    };
    out.once('timeout', () => out.destroy(new Error(`no progress in ${IDLE_MS / 1000} s`)));
    out.once('error', fail);
    // The body first (a part streamed through as it arrives), then a longer wait for the answer.
    pipeline(req, out).then(() => {
      if (answered) return;
      out.setTimeout(0);
      answerTimer = setTimeout(() => out.destroy(new Error(`no answer in ${ANSWER_MS / 1000} s`)), ANSWER_MS);
    }, (e: Error) => fail(e));
  });
}

/**
 * The session named by a forwarded request, once its signature checks (UNAUTHORIZED otherwise):
 * method, path with query and Content-Range, signed by a process sharing this store.
 */
export async function forwardedUpload(ctx: Ctx): Promise<ForwardedUpload> {
  const { app, req, url } = ctx;
  checkPeerSignature(await peerSecret(app.driver), req as IncomingMessage, url.pathname + url.search, req.headers['content-range'] ?? '');
  const [namespace, model, id, ...rest] = url.pathname.slice(UPLOAD_PEER_PATH.length).split('/');
  if (rest.length > 0 || !SEGMENT.test(namespace ?? '') || !SEGMENT.test(model ?? '') || !ID.test(id ?? '')) {
    throw new RegistryError('NOT_FOUND', `no such endpoint: ${url.pathname.slice(0, 100)}`);
  }
  return { namespace: namespace!, model: model!, id: id! };
}
