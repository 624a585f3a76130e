// Blob reads and writes are tied to the repository a request names (registry/blobs/blob-access.ts):
// the decisions the blob, upload and manifest handlers share. A blob that is not reachable
// through the named repository is "unknown" (404), never "forbidden": the answer must not tell
// whether the registry has it.
import type { App } from '../app.js';
import type { Principal } from '../auth/decisions.js';
import { RegistryError } from '../errors.js';
import type { RepoName } from '../registry/blobs/blob-access.js';

function subjectOf(app: App, p: Principal | undefined): string {
  return p ? app.auth.subject(p) : 'anonymous';
}

/** The one answer for a blob that is absent or not reachable through the repository. */
export function blobUnknown(app: App, digest: string, repo: RepoName): RegistryError {
  const why = app.cache?.offline ? ' (the registry is in offline mode)' : '';
  return new RegistryError('BLOB_UNKNOWN', `blob unknown: ${digest} is not in ${repo.namespace}/${repo.model}${why}`);
}

/** Is the blob reachable through this repository by this requester? (Its rights there were checked by the gate.) */
export function reachableThrough(app: App, p: Principal | undefined, digest: string, repo: RepoName): Promise<boolean> {
  return app.access.through(digest, repo, subjectOf(app, p));
}

/** May the requester already read the blob through some repository (its rights and the policy rules)? */
export async function readableAnywhere(app: App, p: Principal | undefined, digest: string): Promise<boolean> {
  if (!p || p.kind === 'signed-url') return false;
  const repos = await app.access.repositories(digest, subjectOf(app, p));
  return repos.some((r) => app.auth.may(p, r.namespace, 'pull') && app.policy.decide('pull', r.namespace, r.model).allowed);
}

/** The requester put the blob into the repository (upload or mount): reachable there by it until a manifest names it. */
export function notePut(app: App, p: Principal | undefined, repo: RepoName, digest: string): void {
  if (p?.kind === 'key' || p?.kind === 'user') app.access.grant(app.auth.subject(p), repo, [digest]);
}

/**
 * ollama's push asks HEAD before each blob and sends a mount only for layers made FROM another
 * model. For a requester that may push here, a blob it may already read elsewhere counts as
 * mounted on HEAD, exactly as POST ?mount would: nothing it could not read before.
 */
export async function mountOnHead(app: App, p: Principal | undefined, digest: string, repo: RepoName): Promise<boolean> {
  if (p?.kind !== 'key' && p?.kind !== 'user') return false;
  if (!app.auth.may(p, repo.namespace, 'push') || !app.policy.decide('push', repo.namespace, repo.model).allowed) return false;
  if (!(await readableAnywhere(app, p, digest))) return false;
  notePut(app, p, repo, digest);
  return true;
}
