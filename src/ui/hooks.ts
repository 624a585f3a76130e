// What the web page may offer besides reading: the write features and sign-in. The page shows
// their controls as soon as `features()` says they exist (contracts in README, "The web catalog").
import type { App } from '../app.js';
import { TOKEN_PATH } from '../http/auth.js';

export interface UiFeatures {
  /** Prefetch: POST {"name": "<as users type it>"} to url; NDJSON progress in ollama's /api/pull shape. */
  prefetch: false | { url: string };
  /** Delete a tag: DELETE url, with {host}, {namespace}, {model}, {tag} filled in (URL-encoded). */
  delete: false | { url: string };
  /** Sign-in: GET tokenUrl with Basic credentials → {"token": "..."}, sent as Bearer on prefetch/delete. */
  signIn: false | { tokenUrl: string };
  /** The transparent mirror's client set-up page (absent when the mirror is off). */
  mirror?: { setupUrl: string };
}

export function features(app: App): UiFeatures {
  // Deletes a tag in every host folder (see DELETE …/manifests/<tag>).
  const del = app.config.allowDelete ? { url: '/v2/{namespace}/{model}/manifests/{tag}' } : false;
  // Prefetch exists when an upstream (or offline mode) is configured: POST /api/pull.
  const prefetch = app.cache ? { url: '/api/pull' } : false;
  // Sign-in is offered when it can unlock something (a write, or reads that need credentials)
  // and there is a user to sign in as: the page signs in with a name and password only.
  const hasUsers = app.auth.store.users().length > 0;
  const signIn = hasUsers && (del || prefetch || !app.config.auth.anonymousRead) ? { tokenUrl: TOKEN_PATH } : false;
  return { prefetch, delete: del, signIn, ...(app.config.mirror ? { mirror: { setupUrl: '/mirror/setup' } } : {}) };
}
