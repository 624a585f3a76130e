// An emulation of the stock ollama client's legacy registry code path (what `ollama pull` and
// `ollama push` make the local `ollama serve` do), written from /work/shared/protocol/ollama.md
// and ollama's server/images.go, download.go, upload.go, auth.go. It talks real HTTP with
// node:http/https, with Go's client behaviour reproduced where ollama depends on it.
//
//   ollama-client.ts  entry points: ollamaPull, ollamaPush (the local API's name handling)
//   ollama-names.ts   name grammar, the models folder, manifest (de)serialisation, part layout
//   ollama-pull.ts    PullModel + download.go          ollama-push.ts  PushModel + upload.go
//   ollama-transfer*.ts  x/transfer: tensor models' blobs (ollama-transfer-pull.ts, -push.ts)
//   ollama-auth.ts    makeRequest(WithRetry), 401 → signed token request, ed25519 keys
//   ollama-http.ts    Go net/url + net/http client (redirects, gzip, Content-Length), request log
//
// Errors are thrown with the text ollama prints after `Error: `, and carry `requests`.
import { TEST_TIMING, type ClientContext, type OllamaKey, type OllamaTiming } from './ollama-auth.js';
import { Transport, type RequestLog } from './ollama-http.js';
import { displayShortest, getExistingName, isFullyQualified, nameString, normalizePullName, parseName, parseNameLoose, type ModelName, type PartLayout } from './ollama-names.js';
import { pullModel, type PullModelResult } from './ollama-pull.js';
import { pushModel, type PushModelResult } from './ollama-push.js';

export { makeOllamaKey, signTokenRequest, OLLAMA_TIMING, TEST_TIMING, TOKEN_SIGNATURE_SUFFIX, type OllamaKey, type OllamaTiming } from './ollama-auth.js';
export { type RequestLog } from './ollama-http.js';
export { parseName, displayShortest, OLLAMA_PARTS, type ModelName, type PartLayout } from './ollama-names.js';

export const DEFAULT_USER_AGENT = 'ollama/0.12.3 (amd64 linux) Go/go1.24.1';

export interface OllamaClientOptions {
  /** OLLAMA_MODELS: blobs/ and manifests/ live here. */
  modelsDir: string;
  /** `--insecure`: every registry request goes over plain http (default true). */
  insecure?: boolean;
  /** The ~/.ollama/id_ed25519 of the `ollama serve` process; without it a 401 fails like ollama without a key file. */
  key?: OllamaKey;
  userAgent?: string;
  /** Requests are appended here as they happen (also returned as `requests`, and on errors). */
  log?: RequestLog[];
  /** Part layout (default ollama's 16 parts clamped to 100 MB…1 GB); a number = fixed part size. */
  partSize?: PartLayout | number;
  /** Retry/backoff timing; default TEST_TIMING (ollama's schedule, 100× faster); OLLAMA_TIMING is the real one. */
  timing?: Partial<OllamaTiming>;
  /** `host[:port]` or hostname → `ip:port`: where to connect instead (Host header and URLs unchanged). */
  connectTo?: Record<string, string>;
  /** CA certificate(s) to trust for HTTPS (the OS trust store, for ollama). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Re-spell name parts after local manifests that match case-insensitively, as the local API does (default true). */
  canonicalizeCase?: boolean;
  /** OLLAMA_MAX_TRANSFER_STREAMS: bodies in flight for tensor models (default 4). */
  maxTransferStreams?: number;
}

export interface OllamaPullOptions extends OllamaClientOptions {
  /** Delete blobs only the tag's previous manifest used (ollama does unless OLLAMA_NOPRUNE; default true). */
  prune?: boolean;
  /** The MLX runtime is there (default true); without it a tensor model's pull fails as ollama's does. */
  mlx?: boolean;
}

export interface OllamaPushOptions extends OllamaClientOptions {
  /** Test hook: one PATCH's response is treated as lost, so it is re-sent (same Content-Range, same URL). */
  retryPatchOnce?: boolean | { digest?: string; part?: number };
  /** Test hook (tensor models): the first attempt at these blobs fails after its session is open; ollama starts another. */
  failFirstAttempt?: string[];
}

export type OllamaPullResult = PullModelResult & { requests: RequestLog[] };
export type OllamaPushResult = PushModelResult & { requests: RequestLog[] };

/** An error as ollama reports it, with the requests made so far. */
export type OllamaError = Error & { requests: RequestLog[] };

const PUSH_DENIED = 'you are not authorized to push to this namespace, create the model under a namespace you own';

async function withClient<T>(opts: OllamaClientOptions, fn: (ctx: ClientContext, requests: RequestLog[]) => Promise<T>, rewrite?: (msg: string) => string): Promise<T & { requests: RequestLog[] }> {
  const requests = opts.log ?? [];
  const transport = new Transport({ log: requests, connectTo: opts.connectTo, ca: opts.ca });
  const ctx: ClientContext = { transport, userAgent: opts.userAgent ?? DEFAULT_USER_AGENT, key: opts.key, timing: { ...TEST_TIMING, ...opts.timing } };
  try {
    return { ...(await fn(ctx, requests)), requests };
  } catch (e) {
    const cause = e instanceof Error ? e : new Error(String(e));
    const err = new Error(rewrite ? rewrite(cause.message) : cause.message, { cause }) as OllamaError;
    err.requests = requests;
    throw err;
  } finally {
    transport.close();
  }
}

/** The name the local API hands to PullModel/PushModel: canonical case, DisplayShortest, parsed again. */
async function effectiveName(n: ModelName, opts: OllamaClientOptions): Promise<ModelName> {
  const canonical = opts.canonicalizeCase === false ? n : await getExistingName(opts.modelsDir, n);
  return parseNameLoose(displayShortest(canonical));
}

/** `ollama pull [--insecure] NAME`, as the local server performs it (protocol §2.3). */
export function ollamaPull(name: string, opts: OllamaPullOptions): Promise<OllamaPullResult> {
  return withClient(opts, async (ctx) => {
    const n = await effectiveName(parseName(normalizePullName(name)), opts);
    return pullModel(ctx, n, {
      modelsDir: opts.modelsDir, insecure: opts.insecure ?? true, partSize: opts.partSize, prune: opts.prune ?? true, mlx: opts.mlx, maxTransferStreams: opts.maxTransferStreams,
    });
  });
}

/** `ollama push [--insecure] NAME` (protocol §5); auth failures are reworded as the CLI does. */
export function ollamaPush(name: string, opts: OllamaPushOptions): Promise<OllamaPushResult> {
  const rewrite = (msg: string) => (/unauthorized|access denied/i.test(msg) ? PUSH_DENIED : msg);
  return withClient(opts, async (ctx) => {
    const n = await effectiveName(parseNameLoose(name), opts);
    if (!isFullyQualified(n)) throw new Error(`unqualified name: ${nameString(n)}`);
    return pushModel(ctx, n, {
      modelsDir: opts.modelsDir, insecure: opts.insecure ?? true, partSize: opts.partSize, retryPatchOnce: opts.retryPatchOnce,
      maxTransferStreams: opts.maxTransferStreams, failFirstAttempt: opts.failFirstAttempt,
    });
  }, rewrite);
}
