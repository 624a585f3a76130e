// A temporary ollama models folder holding one random blob and a manifest that names it,
// and the Caddyfile of the older Caddy+ollama setup serving that same folder.
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { trackFolder } from './procs.js';

export interface Fixture {
  dir: string;
  digest: string;
  size: number;
  /** Path of the blob under /v2 (ns library, model bench). */
  blobPath: string;
  manifestPath: string;
}

const CHUNK = 16 << 20;

/** Write `size` random bytes as blobs/sha256-<hex> plus manifests/registry.ollama.ai/library/bench/latest. */
export function makeFixture(size: number, parent = os.tmpdir()): Fixture {
  const dir = trackFolder(mkdtempSync(path.join(parent, 'ollama-registry-bench-')));
  mkdirSync(path.join(dir, 'blobs'));
  const tmp = path.join(dir, 'blobs', 'partial');
  const fd = openSync(tmp, 'w');
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (let left = size; left > 0; left -= CHUNK) {
      const part = buf.subarray(0, Math.min(CHUNK, left));
      randomFillSync(part);
      hash.update(part);
      for (let off = 0; off < part.length; ) off += writeSync(fd, part, off);
    }
    // Flush now so that write-back does not run during the measurements.
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const hex = hash.digest('hex');
  const digest = `sha256:${hex}`;
  renameSync(tmp, path.join(dir, 'blobs', `sha256-${hex}`));

  const config = Buffer.from(JSON.stringify({ model_format: 'gguf', model_family: 'bench', file_type: 'F16' }));
  const configHex = createHash('sha256').update(config).digest('hex');
  writeFileSync(path.join(dir, 'blobs', `sha256-${configHex}`), config);
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${configHex}`, size: config.length },
    layers: [{ mediaType: 'application/vnd.ollama.image.model', digest, size }],
  };
  const mdir = path.join(dir, 'manifests', 'registry.ollama.ai', 'library', 'bench');
  mkdirSync(mdir, { recursive: true });
  writeFileSync(path.join(mdir, 'latest'), JSON.stringify(manifest));
  return { dir, digest, size, blobPath: `/v2/library/bench/blobs/${digest}`, manifestPath: '/v2/library/bench/manifests/latest' };
}

/** Read a file once so it is in the page cache for every server alike. */
export function warmPageCache(file: string): void {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    while (readSync(fd, buf, 0, CHUNK, null) > 0);
  } finally {
    closeSync(fd);
  }
}

/**
 * The Caddyfile of the older Caddy+ollama setup (wbuntu/ollama-registry, quoted in
 * shared/research/peers.md §1.1): same rewrites, headers and file_server. Differences, all
 * for the benchmark: loopback address and port, admin endpoint off, no access log (our
 * server runs at --log-level warn, so neither side logs requests), no directory browsing.
 */
export function caddyfile(root: string, port: number): string {
  return `{
	admin off
	auto_https off
}
http://127.0.0.1:${port} {
	root * ${root}
	@blobRequests path_regexp blob /v2/([^/]+)/([^/]+)/blobs/sha256:(.+)
	rewrite @blobRequests /blobs/sha256-{re.blob.3}
	header @blobRequests {
		Location {uri}
	}
	@manifestRequests {
		path_regexp manifest /v2/([^/]+)/([^/]+)/manifests/(.+)
	}
	rewrite @manifestRequests /manifests/registry.ollama.ai/{re.manifest.1}/{re.manifest.2}/{re.manifest.3}
	header @manifestRequests {
		Content-Type application/vnd.docker.distribution.manifest.v2+json
	}
	file_server
}
`;
}
