// Blob uploads as ollama pushes them (protocol §5.3–5.5, legacy and transfer clients) and as OCI
// tools do (monolithic PUT, chunked PATCH without Content-Range). Every Location is absolute:
// ollama cannot follow a relative one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors.js';
import { digestHex } from '../names.js';
import { notePut, readableAnywhere } from './blob-access.js';
import type { Ctx, Handler } from './context.js';
import { absoluteUrl } from './context.js';
import { forwardedUpload, forwardUpload } from './upload-forward.js';
import { uploadRange } from '../registry/uploads/session-records.js';

/** `forwarded`: sent by another replica for the session this process holds (upload-forward.ts). */
type UploadRoute = { kind: 'uploads'; namespace: string; model: string; id?: string; forwarded?: true };

function sessionPath(route: UploadRoute, id: string): string {
  return `/v2/${route.namespace}/${route.model}/blobs/uploads/${id}`;
}

function done(res: ServerResponse, status: number, headers: Record<string, string>): void {
  res.writeHead(status, { ...headers, 'Content-Length': 0 });
  res.end();
}

function created(req: IncomingMessage, res: ServerResponse, route: UploadRoute, digest: string): void {
  done(res, 201, { Location: absoluteUrl(req, `/v2/${route.namespace}/${route.model}/blobs/${digest}`), 'Docker-Content-Digest': digest });
}

function accepted(req: IncomingMessage, res: ServerResponse, route: UploadRoute, id: string, size: number, status = 202): void {
  done(res, status, { Location: absoluteUrl(req, sessionPath(route, id)), 'Docker-Upload-UUID': id, Range: uploadRange(size) });
}

/** Does the request carry body bytes? (A Content-Length of 0, or none and not chunked, means no.) */
function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding']) return true;
  return Number(req.headers['content-length'] ?? 0) > 0;
}

function declaredLength(req: IncomingMessage): number | undefined {
  const v = req.headers['content-length'];
  return v === undefined ? undefined : Number(v);
}

/** `Content-Range: S-E` (ollama), also `bytes S-E[/total]`; inclusive. */
function parseContentRange(req: IncomingMessage): { start: number; length: number } | undefined {
  const h = req.headers['content-range'];
  if (h === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d{1,15}|\*))?$/.exec(h.trim());
  if (!m) throw new RegistryError('RANGE_INVALID', `malformed Content-Range ${JSON.stringify(h.slice(0, 60))}: expected START-END (inclusive byte offsets)`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new RegistryError('RANGE_INVALID', `Content-Range ${h} ends before it starts`);
  const length = end - start + 1;
  const cl = declaredLength(req);
  if (cl !== undefined && cl !== length) {
    throw new RegistryError('RANGE_INVALID', `Content-Range ${h} is ${length} bytes but Content-Length is ${cl}`);
  }
  return { start, length };
}

function audit(ctx: Ctx<UploadRoute>, event: string, fields: Record<string, unknown>): void {
  const { app, req, route } = ctx;
  const repo = `${route.namespace}/${route.model}`;
  app.log.info({ audit: event, who: ctx.principal?.label, repo, ip: req.socket.remoteAddress, ...fields }, event);
}

/** Whom upload quotas count a session against: the user or key, else the client's address. */
function requester(ctx: Ctx<UploadRoute>): string {
  const p = ctx.principal;
  return p && (p.kind === 'key' || p.kind === 'user') ? p.label : `address ${ctx.req.socket.remoteAddress ?? 'unknown'}`;
}

/** POST …/blobs/uploads/: 201 when the blob is already here (mount or not), else a new session. */
export const postUpload: Handler<UploadRoute> = async (ctx) => {
  const { app, req, res, url, route } = ctx;
  if (route.id !== undefined) {
    throw new RegistryError('UNSUPPORTED', 'POST opens an upload at …/blobs/uploads/; continue a session with PATCH or PUT', { headers: { Allow: 'GET, PATCH, PUT, DELETE' } });
  }
  const mount = url.searchParams.get('mount');
  const digest = url.searchParams.get('digest');
  for (const d of [mount, digest]) {
    if (d === null) continue;
    digestHex(d); // DIGEST_INVALID for a malformed one
    // 201 at once only for a blob this requester may already read somewhere (whatever `from`
    // says): anything else is uploaded and verified, so existence is never confirmed for free.
    if ((await readableAnywhere(ctx.app, ctx.principal, d)) && (await app.blobs.size(d)) !== null) {
      notePut(app, ctx.principal, route, d);
      audit(ctx, 'blob-mounted', { digest: d });
      created(req, res, route, d);
      return;
    }
  }
  if (digest !== null && hasBody(req)) {
    // Monolithic upload in one request.
    const { size } = await app.blobs.put(digest, req, declaredLength(req));
    notePut(app, ctx.principal, route, digest);
    audit(ctx, 'blob-pushed', { digest, size, how: 'monolithic' });
    created(req, res, route, digest);
    return;
  }
  const session = await app.uploads.create(route, digest ?? undefined, requester(ctx), ctx.principal && app.auth.subject(ctx.principal));
  audit(ctx, 'upload-started', { upload: session.id });
  accepted(req, res, route, session.id, 0);
};

function needId(route: UploadRoute): string {
  if (route.id === undefined) throw new RegistryError('UNSUPPORTED', 'open an upload with POST …/blobs/uploads/ first', { headers: { Allow: 'POST' } });
  return route.id;
}

/** A session another replica holds: its request is sent there (true), else handled here (false). */
async function forwarded(ctx: Ctx<UploadRoute>, id: string): Promise<boolean> {
  if (ctx.route.forwarded) return false;
  const owner = await ctx.app.uploads.ownerElsewhere(id, ctx.route);
  if (owner === undefined) return false;
  await forwardUpload(ctx, owner, id);
  return true;
}

/** A request another replica forwarded to this one, the owner of its session: checked, then handled as it would be here. */
export const peerUpload: Handler = async (ctx) => {
  const s = await forwardedUpload(ctx);
  const route: UploadRoute = { kind: 'uploads', namespace: s.namespace, model: s.model, id: s.id, forwarded: true };
  const handler = { PATCH: patchUpload, PUT: putUpload, GET: getUpload, DELETE: deleteUpload }[ctx.req.method as 'PATCH' | 'PUT' | 'GET' | 'DELETE'];
  await handler({ ...ctx, route });
};

/** PATCH <session>: one part, at its Content-Range start (or at the end). */
export const patchUpload: Handler<UploadRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  const id = needId(route);
  if (await forwarded(ctx, id)) return;
  const range = parseContentRange(req);
  const size = await app.uploads.append(id, route, range?.start, req, range?.length);
  accepted(req, res, route, id, size);
};

/** PUT <session>?digest=…[&etag=…]: commit, with or without a last part in the body. */
export const putUpload: Handler<UploadRoute> = async (ctx) => {
  const { app, req, res, url, route } = ctx;
  const id = needId(route);
  const digest = url.searchParams.get('digest');
  if (digest === null) throw new RegistryError('DIGEST_INVALID', 'a commit needs ?digest=sha256:<hex> naming the uploaded blob');
  digestHex(digest);
  if (await forwarded(ctx, id)) {
    if (res.statusCode === 201) notePut(app, ctx.principal, route, digest);
    return;
  }
  // `etag` (ollama's S3-style multipart ETag) is accepted and not checked: the sha256 is.
  const range = parseContentRange(req);
  const last = hasBody(req) || range ? { start: range?.start, body: req, length: range?.length } : undefined;
  const { size, already } = await app.uploads.commit(id, route, digest, last);
  notePut(app, ctx.principal, route, digest);
  if (!already) audit(ctx, 'blob-pushed', { digest, size, upload: id });
  created(req, res, route, digest);
};

/** GET <session>: how much has arrived. */
export const getUpload: Handler<UploadRoute> = async (ctx) => {
  const { app, req, res, route } = ctx;
  const id = needId(route);
  if (await forwarded(ctx, id)) return;
  const s = await app.uploads.status(id, route);
  accepted(req, res, route, id, s.size, 204);
};

/** DELETE <session>: cancel. */
export const deleteUpload: Handler<UploadRoute> = async (ctx) => {
  const { app, res, route } = ctx;
  const id = needId(route);
  if (await forwarded(ctx, id)) return;
  await app.uploads.cancel(id, route);
  audit(ctx, 'upload-cancelled', { upload: id });
  res.writeHead(204);
  res.end();
};
