// The settings table: every key a user may set, once. Its environment variable, its schema (which
// checks a hostile value and gives the typed one), where it goes in Config, its default and its
// docs all live in its row; config.ts loads from it and config-docs.ts prints the reference.
import { parsePolicy } from './auth/rules.js';
import type { Config, S3Config } from './config.js';
import {
  age, bool, defaultDataDir, DEFAULT_PUSH_HOST, duration, expected, filePath, hostFolder, hostFolders, httpOrigin, httpUrl, leaf, listen, list, oneOf, positive, setting,
  size, text, wholeNumber, type Setting,
} from './config-values.js';
import { LIMIT_SETTINGS } from './limits.js';
import { MIRROR_SETTINGS } from './mirror/config.js';
import { DEFAULT_HOST } from './names.js';
import { UPSTREAM_SETTINGS } from './upstream/config.js';
import { parseSize } from './units.js';

const MIN_FREE = 'a size such as 1GiB, a percentage of the disk such as 5%, or 0';

/** `2GiB`, `10%`, or both as a list (the smaller floor applies). */
const minFree = leaf((raw) => {
  const items = Array.isArray(raw) || (typeof raw === 'string' && raw.includes(',')) ? list(raw) : [raw];
  if (items.length > 2) throw expected(MIN_FREE, raw);
  const out: { bytes?: number; percent?: number } = {};
  for (const item of items) {
    const pct = typeof item === 'string' ? /^\s*(\d{1,3}(?:\.\d{1,6})?)\s*%\s*$/.exec(item) : null;
    const n = pct ? null : parseSize(item);
    if (pct && Number(pct[1]) <= 100 && out.percent === undefined) out.percent = Number(pct[1]);
    else if (n !== null && Number.isSafeInteger(n) && out.bytes === undefined) out.bytes = n;
    else throw expected(MIN_FREE, raw);
  }
  return out;
});

/** The storage.s3 settings of `cfg`, made with their defaults when a first storage.s3.* key is set. */
function s3Of(cfg: Config): S3Config {
  cfg.storage.s3 ??= { bucket: '', prefix: '', forcePathStyle: true, redirect: false, redirectTtlSeconds: 86_400 };
  return cfg.storage.s3;
}

const bucket = leaf((raw) => {
  if (typeof raw !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(raw)) throw expected('an S3 bucket name (3-63 of a-z 0-9 . -)', raw);
  return raw;
});
const prefix = leaf((raw) => {
  const p = text(raw).replace(/\/+$/, '');
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(p) || p.length > 512 || p.split('/').some((s) => s === '.' || s === '..')) {
    throw expected('a key prefix such as models or team/models (letters, digits, . _ - and /)', raw);
  }
  return p;
});
const region = leaf((raw) => {
  if (typeof raw !== 'string' || !/^[a-z0-9-]{1,64}$/.test(raw)) throw expected('a region such as us-east-1', raw);
  return raw;
});

const CORE_SETTINGS: Setting[] = [
  setting({ key: 'data', env: 'OLLAMA_REGISTRY_DATA', flag: '`--data`', default: defaultDataDir, defaultDoc: '`$XDG_DATA_HOME/ollama-registry` or `~/.local/share/ollama-registry`',
    schema: filePath, set: (c, v) => { c.data = v; }, doc: 'the data folder: an ollama models folder plus `.ollama-registry/`' }),
  setting({ key: 'listen', env: 'OLLAMA_REGISTRY_LISTEN', flag: '`--listen`', default: '0.0.0.0:8080', schema: listen, set: (c, v) => { c.listen = v; },
    doc: 'address and port (`HOST:PORT`, `[::1]:PORT` or `PORT`)' }),
  setting({ key: 'tls.cert', env: 'OLLAMA_REGISTRY_TLS_CERT', flag: '`--tls-cert`', defaultDoc: 'none (plain HTTP)', schema: filePath,
    set: (c, v) => { c.tls = { cert: v, key: c.tls?.key ?? '' }; }, doc: 'PEM certificate chain for HTTPS (with `tls.key`)' }),
  setting({ key: 'tls.key', env: 'OLLAMA_REGISTRY_TLS_KEY', flag: '`--tls-key`', defaultDoc: 'none', schema: filePath,
    set: (c, v) => { c.tls = { cert: c.tls?.cert ?? '', key: v }; }, doc: 'PEM private key of `tls.cert`' }),
  setting({ key: 'hosts', env: 'OLLAMA_REGISTRY_HOSTS', default: [DEFAULT_HOST], schema: hostFolders, set: (c, v) => { c.hosts = v; },
    doc: 'host folders searched, in order, for names without a host (comma list)' }),
  setting({ key: 'log.level', env: 'OLLAMA_REGISTRY_LOG_LEVEL', flag: '`--log-level`', default: 'info',
    schema: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), set: (c, v) => { c.log.level = v; }, doc: 'what is logged' }),
  setting({ key: 'log.format', env: 'OLLAMA_REGISTRY_LOG_FORMAT', flag: '`--log-format`', default: 'auto', schema: oneOf(['json', 'text', 'auto']),
    set: (c, v) => { c.log.format = v; }, doc: '`auto`: JSON lines, text on a terminal' }),
  setting({ key: 'shutdownTimeoutSeconds', env: 'OLLAMA_REGISTRY_SHUTDOWN_TIMEOUT', default: 30, schema: duration('a number of seconds ≥ 0'),
    set: (c, v) => { c.shutdownTimeoutSeconds = v; }, doc: 'how long in-flight requests may finish after SIGTERM' }),
  ...UPSTREAM_SETTINGS,
  setting({ key: 'policy', default: [], defaultDoc: 'no rules: everything allowed', schema: leaf((raw) => parsePolicy(raw, 'policy')), set: (c, v) => { c.policy = v; },
    doc: 'allow/deny rules (file only; see [Policy](#policy-who-may-pull-and-push-what))' }),
  setting({ key: 'storage.maxSize', env: 'OLLAMA_REGISTRY_MAX_SIZE', flag: '`--max-size` (`serve`, `gc`)', default: 0, defaultDoc: 'none',
    schema: size(), set: (c, v) => { c.storage.maxSize = v; }, doc: 'evict least-recently-pulled cached models past this (`500GB`, `1.5TiB`, bytes)' }),
  setting({ key: 'storage.gcInterval', env: 'OLLAMA_REGISTRY_GC_INTERVAL', default: 0, defaultDoc: 'none', schema: duration(),
    set: (c, v) => { c.storage.gcIntervalSeconds = v; }, doc: '`serve` runs gc this often (`6h`)' }),
  setting({ key: 'storage.gcGrace', env: 'OLLAMA_REGISTRY_GC_GRACE', flag: '`--grace` (`gc`)', default: '1h', schema: age(),
    set: (c, v) => { c.storage.gcGraceSeconds = v; }, doc: 'gc never deletes a blob younger than this' }),
  setting({ key: 'storage.cachedHosts', env: 'OLLAMA_REGISTRY_CACHED_HOSTS', default: [], defaultDoc: 'none (besides the upstreams\' host folders)',
    schema: hostFolders, set: (c, v) => { c.storage.cachedHosts = v; }, doc: 'host folders that are a cache (evictable) (comma list)' }),
  setting({ key: 'storage.minFree', env: 'OLLAMA_REGISTRY_MIN_FREE', default: ['1GiB', '5%'], defaultDoc: '1 GiB, or 5% of a smaller disk',
    schema: minFree, set: (c, v) => { c.storage.minFree = v; },
    doc: 'writes are refused below this free space (`2GiB`, `10%`, both: the smaller, `0` = none; see [Disk space](#disk-space-and-upload-quotas))' }),
  setting({ key: 'storage.scratch', env: 'OLLAMA_REGISTRY_SCRATCH', defaultDoc: '`<data>/.ollama-registry/scratch`', schema: filePath,
    set: (c, v) => { c.storage.scratch = v; },
    doc: 'a local folder for fill staging, pushed parts and hashing; keep it on the data folder\'s file system so files move in by rename' }),
  setting({ key: 'storage.lease', env: 'OLLAMA_REGISTRY_LEASE', default: '30s', schema: duration('a duration of at least 1s such as 30s', { min: 1 }),
    set: (c, v) => { c.storage.leaseSeconds = v; }, doc: 'a lease (the owner of a fill) not renewed for this long is free: another process takes the work over' }),
  setting({ key: 'storage.advertiseUrl', env: 'OLLAMA_REGISTRY_ADVERTISE_URL', defaultDoc: 'the address `serve` listens on', schema: httpOrigin,
    set: (c, v) => { c.storage.advertiseUrl = v; }, doc: 'the URL other registry processes reach this one at (the fills they follow, the upload sessions they forward)' }),
  setting({ key: 'storage.s3.bucket', env: 'OLLAMA_REGISTRY_S3_BUCKET', defaultDoc: 'none (the data folder holds everything)', schema: bucket,
    set: (c, v) => { s3Of(c).bucket = v; },
    doc: 'keep blobs and manifests in this S3 bucket; credentials only from the AWS SDK\'s usual places (`AWS_ACCESS_KEY_ID`…, `~/.aws/`)' }),
  setting({ key: 'storage.s3.endpoint', env: 'OLLAMA_REGISTRY_S3_ENDPOINT', defaultDoc: 'AWS', schema: httpUrl, set: (c, v) => { s3Of(c).endpoint = v; },
    doc: 'the S3 endpoint (Ceph RGW, MinIO…)' }),
  setting({ key: 'storage.s3.region', env: 'OLLAMA_REGISTRY_S3_REGION', defaultDoc: 'the SDK\'s (`AWS_REGION`), else `us-east-1`', schema: region,
    set: (c, v) => { s3Of(c).region = v; }, doc: 'the bucket\'s region' }),
  setting({ key: 'storage.s3.prefix', env: 'OLLAMA_REGISTRY_S3_PREFIX', defaultDoc: 'none', schema: prefix, set: (c, v) => { s3Of(c).prefix = v; },
    doc: 'key prefix inside the bucket' }),
  setting({ key: 'storage.s3.forcePathStyle', env: 'OLLAMA_REGISTRY_S3_FORCE_PATH_STYLE', defaultDoc: '`true`', schema: bool,
    set: (c, v) => { s3Of(c).forcePathStyle = v; }, doc: 'path-style URLs (`http://host/bucket/key`), as Ceph and MinIO usually need' }),
  setting({ key: 'storage.s3.redirect', env: 'OLLAMA_REGISTRY_S3_REDIRECT', defaultDoc: '`false`', schema: bool, set: (c, v) => { s3Of(c).redirect = v; },
    doc: 'answer blob GETs with a redirect to a presigned URL instead of streaming the bytes' }),
  setting({ key: 'storage.s3.redirectEndpoint', env: 'OLLAMA_REGISTRY_S3_REDIRECT_ENDPOINT', defaultDoc: '`storage.s3.endpoint`', schema: httpUrl,
    set: (c, v) => { s3Of(c).redirectEndpoint = v; }, doc: 'the endpoint clients reach for presigned URLs, when it differs' }),
  setting({ key: 'storage.s3.redirectTtl', env: 'OLLAMA_REGISTRY_S3_REDIRECT_TTL', defaultDoc: '`24h`',
    schema: duration('a duration such as 1h or 24h', { zero: false, max: 7 * 86400, maxText: '7d (the limit of a presigned URL)' }),
    set: (c, v) => { s3Of(c).redirectTtlSeconds = v; }, doc: 'lifetime of a presigned URL' }),
  setting({ key: 'pushHost', env: 'OLLAMA_REGISTRY_PUSH_HOST', default: DEFAULT_PUSH_HOST, schema: hostFolder, set: (c, v) => { c.pushHost = v; },
    doc: 'the host folder pushed models are stored under; searched first' }),
  setting({ key: 'allowDelete', env: 'OLLAMA_REGISTRY_ALLOW_DELETE', default: false, schema: bool, set: (c, v) => { c.allowDelete = v; },
    doc: 'DELETE of tags and manifests (to principals with the delete right)' }),
  setting({ key: 'uploadMaxAgeHours', env: 'OLLAMA_REGISTRY_UPLOAD_MAX_AGE_HOURS', default: 24, schema: positive('a number of hours > 0', 24 * 365), set: (c, v) => { c.uploadMaxAgeHours = v; },
    doc: 'push sessions untouched for this long are removed' }),
  setting({ key: 'uploads.maxSessionsPerClient', env: 'OLLAMA_REGISTRY_UPLOAD_MAX_SESSIONS_PER_CLIENT', default: 100, schema: wholeNumber(0, 'a whole number ≥ 0 (0: no cap)'),
    set: (c, v) => { c.uploads.maxSessionsPerClient = v; }, doc: 'open push sessions of one requester (`0` = no cap)' }),
  setting({ key: 'uploads.maxSessions', env: 'OLLAMA_REGISTRY_UPLOAD_MAX_SESSIONS', default: 1000, schema: wholeNumber(0, 'a whole number ≥ 0 (0: no cap)'),
    set: (c, v) => { c.uploads.maxSessions = v; }, doc: 'open push sessions in total (`0` = no cap)' }),
  setting({ key: 'uploads.maxBytesPerClient', env: 'OLLAMA_REGISTRY_UPLOAD_MAX_BYTES_PER_CLIENT', default: 0, defaultDoc: 'none',
    schema: size('a size such as 100GB or a number of bytes (0: no cap)'), set: (c, v) => { c.uploads.maxBytesPerClient = v; },
    doc: 'bytes in open push sessions of one requester (`100GB`; bounded by `storage.maxSize` and `storage.minFree`)' }),
  setting({ key: 'uploads.maxBytes', env: 'OLLAMA_REGISTRY_UPLOAD_MAX_BYTES', default: 0, defaultDoc: 'none',
    schema: size('a size such as 100GB or a number of bytes (0: no cap)'), set: (c, v) => { c.uploads.maxBytes = v; }, doc: 'bytes in open push sessions in total' }),
  setting({ key: 'auth.anonymousRead', env: 'OLLAMA_REGISTRY_ANONYMOUS_READ', default: true, schema: bool, set: (c, v) => { c.auth.anonymousRead = v; },
    doc: 'pulls need no credentials (writes always do)' }),
  setting({ key: 'auth.tokenTtlSeconds', env: 'OLLAMA_REGISTRY_TOKEN_TTL', default: 900, schema: positive(), set: (c, v) => { c.auth.tokenTtlSeconds = v; },
    doc: 'lifetime of the tokens the token endpoint issues' }),
  setting({ key: 'auth.blobUrlTtlSeconds', env: 'OLLAMA_REGISTRY_BLOB_URL_TTL', default: 86_400, schema: positive(), set: (c, v) => { c.auth.blobUrlTtlSeconds = v; },
    doc: 'lifetime of signed blob URLs (when reads need credentials)' }),
];

/** Every setting, in the order of the configuration reference. */
export const SETTINGS: Setting[] = [...CORE_SETTINGS, ...MIRROR_SETTINGS, ...LIMIT_SETTINGS];

/** Keys that hold credentials are refused in the file with this hint instead of "unknown setting". */
export function credentialHint(key: string): string | undefined {
  if (/^storage\.s3\.(accessKeyId|secretAccessKey|sessionToken|credentials)/i.test(key)) {
    return 'S3 credentials are never read from the config file: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials (AWS_PROFILE)';
  }
  return undefined;
}
