// OCI image layouts built by hand for the tests (what umoci or buildah would write): one image
// with a gzip layer, optionally without `mediaType` fields (valid OCI; umoci writes them so),
// or an image index over several platforms.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { sha256Hex } from './models.js';

/** One ustar archive holding one file. */
export function tar(name: string, content: Buffer): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, off: number, len: number) => h.write(s, off, len, 'latin1');
  const octal = (n: number, len: number) => `${n.toString(8).padStart(len - 1, '0')}\0`;
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(content.length, 12), 124, 12);
  put(octal(1_700_000_000, 12), 136, 12);
  put('        ', 148, 8);
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([h, content, pad, Buffer.alloc(1024)]);
}

export interface OciImage {
  dir: string;
  /** The manifest tagged in index.json (an image manifest, or the image index). */
  manifest: Buffer;
  digest: string;
  layer: Buffer;
  layerDigest: string;
  /** Per platform (for an index): the image manifests' digests. */
  children: string[];
}

export interface OciImageOptions {
  tag?: string;
  /** Leave out every `mediaType` of manifests and index (OCI allows it; umoci does it). */
  noMediaType?: boolean;
  /** Several platforms: an image index over one image each. */
  platforms?: Array<{ os: string; architecture: string }>;
  /** Extra bytes that make the layer (and so every digest) unique. */
  seed?: string;
}

/** An OCI image layout in `dir`, tagged `opts.tag` (default `1`). */
export async function makeOciImage(dir: string, opts: OciImageOptions = {}): Promise<OciImage> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (b: Buffer) => {
    const hex = sha256Hex(b);
    await writeFile(path.join(blobs, hex), b);
    return { digest: `sha256:${hex}`, size: b.length };
  };
  const type = (t: string) => (opts.noMediaType ? {} : { mediaType: t });
  const image = async (platform: { os: string; architecture: string }) => {
    const raw = tar('hello.txt', Buffer.from(`hello from an OCI image for ${platform.architecture} ${opts.seed ?? ''}\n`.repeat(2000)));
    const layer = gzipSync(raw);
    const l = await put(layer);
    const config = Buffer.from(JSON.stringify({ ...platform, config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${sha256Hex(raw)}`] } }));
    const c = await put(config);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, ...type('application/vnd.oci.image.manifest.v1+json'),
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...c },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l }],
    }));
    return { manifest, m: await put(manifest), layer, layerDigest: l.digest };
  };
  const platforms = opts.platforms ?? [{ os: 'linux', architecture: 'amd64' }];
  const images = [];
  for (const p of platforms) images.push({ platform: p, ...(await image(p)) });
  let top = images[0]!;
  let manifest = top.manifest;
  let m = top.m;
  if (opts.platforms) {
    manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, ...type('application/vnd.oci.image.index.v1+json'),
      manifests: images.map((i) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...i.m, platform: i.platform })),
    }));
    m = await put(manifest);
  }
  const topType = opts.platforms ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json';
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: topType, ...m, annotations: { 'org.opencontainers.image.ref.name': opts.tag ?? '1' } }],
  }));
  top = images[0]!;
  return { dir, manifest, digest: m.digest, layer: top.layer, layerDigest: top.layerDigest, children: opts.platforms ? images.map((i) => i.m.digest) : [] };
}

/** Push an OCI layout's tagged manifest (and, for an index, its children by digest) with raw requests. */
export async function pushOciLayout(base: string, repo: string, tag: string, image: OciImage, auth: string): Promise<void> {
  const { request } = await import('./http.js');
  const { readFile, readdir } = await import('node:fs/promises');
  const dir = path.join(image.dir, 'blobs', 'sha256');
  const headers = { Authorization: auth };
  const manifests = new Set([image.digest, ...image.children]);
  for (const hex of await readdir(dir)) {
    if (manifests.has(`sha256:${hex}`)) continue;
    const r = await request(base, `/v2/${repo}/blobs/uploads/?digest=sha256:${hex}`, { method: 'POST', headers, body: await readFile(path.join(dir, hex)) });
    if (r.status !== 201) throw new Error(`blob upload: ${r.status} ${r.text()}`);
  }
  for (const d of [...image.children, image.digest]) {
    const body = await readFile(path.join(dir, d.slice(7)));
    const r = await request(base, `/v2/${repo}/manifests/${d === image.digest ? tag : d}`, { method: 'PUT', headers, body });
    if (r.status !== 201) throw new Error(`manifest PUT: ${r.status} ${r.text()}`);
  }
}
