// ollama's manifest list, as ollama PR #16590 (unreleased; commits 81b9cb7f pull, 7fd96eba push)
// describes it: a list `application/vnd.ollama.manifest.list.v2+json` whose children (docker v2
// manifests, chosen by `runner`/`format`) travel as blobs. Push uploads every blob, then each
// child manifest as a blob, then PUTs the list; pull asks for the tag with
// `Accept: <list>, <docker v2>`, picks a child, HEADs and GETs it under /blobs/, then its blobs.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from './http.js';
import { sha256Hex } from './models.js';

export const OLLAMA_LIST = 'application/vnd.ollama.manifest.list.v2+json';
export const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';

export interface ListModel {
  list: Buffer;
  digest: string;
  /** runner → child manifest bytes and the blobs it needs. */
  children: Record<string, { manifest: Buffer; digest: string; blobs: Buffer[] }>;
  /** Every blob of the tree: child manifests, configs, layers. */
  all: Buffer[];
}

const digestOf = (b: Buffer) => `sha256:${sha256Hex(b)}`;

/** Two children, as the PR plans for library/ tags: ggml (gguf) and mlx (safetensors). */
export function makeListModel(seed: string, opts: { requires?: Record<string, string> } = {}): ListModel {
  const children: ListModel['children'] = {};
  const entries = [];
  for (const [runner, format, layerType] of [['ggml', 'gguf', 'application/vnd.ollama.image.model'], ['mlx', 'safetensors', 'application/vnd.ollama.image.tensor']] as const) {
    const config = Buffer.from(JSON.stringify({
      model_format: format, model_family: 'llama', model_type: '1B', file_type: 'Q4_K_M', architecture: 'amd64', os: 'linux', seed,
      ...(opts.requires?.[runner] ? { requires: opts.requires[runner] } : {}),
    }));
    const layer = Buffer.from(`${runner} weights of ${seed} `.repeat(3000));
    const template = Buffer.from(`{{ .Prompt }} ${runner}`);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: DOCKER_V2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: digestOf(config), size: config.length },
      layers: [
        { mediaType: layerType, digest: digestOf(layer), size: layer.length },
        { mediaType: 'application/vnd.ollama.image.template', digest: digestOf(template), size: template.length },
      ],
    }));
    children[runner] = { manifest, digest: digestOf(manifest), blobs: [config, layer, template] };
    entries.push({ mediaType: DOCKER_V2, digest: digestOf(manifest), size: manifest.length, runner, format });
  }
  const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OLLAMA_LIST, manifests: entries }));
  const all = Object.values(children).flatMap((c) => [c.manifest, ...c.blobs]);
  return { list, digest: digestOf(list), children, all };
}

/** Push as the PR's client does: blobs, child manifests as blobs, then the list. */
export async function pushListModel(base: string, repo: string, tag: string, m: ListModel, auth: string): Promise<void> {
  const headers = { Authorization: auth };
  for (const c of Object.values(m.children)) {
    for (const b of [...c.blobs, c.manifest]) {
      const r = await request(base, `/v2/${repo}/blobs/uploads/?digest=${digestOf(b)}`, { method: 'POST', headers, body: b });
      assert.equal(r.status, 201, r.text());
    }
  }
  const r = await request(base, `/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { ...headers, 'Content-Type': OLLAMA_LIST }, body: m.list });
  assert.equal(r.status, 201, r.text());
}

/** Pull as the PR's client does; returns the chosen child's bytes after checking every blob's sha256. */
export async function pullListModel(base: string, repo: string, tag: string, runner: string): Promise<{ list: Buffer; contentType: string; child: Buffer }> {
  const r = await request(base, `/v2/${repo}/manifests/${tag}`, { headers: { Accept: `${OLLAMA_LIST}, ${DOCKER_V2}` } });
  assert.equal(r.status, 200, r.text());
  const list = JSON.parse(r.text()) as { manifests: Array<{ digest: string; size: number; runner: string }> };
  const pick = list.manifests.find((c) => c.runner === runner);
  assert.ok(pick, `no ${runner} child`);
  const head = await request(base, `/v2/${repo}/blobs/${pick.digest}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers['content-length']), pick.size);
  const child = await request(base, `/v2/${repo}/blobs/${pick.digest}`);
  assert.equal(child.status, 200);
  assert.equal(`sha256:${sha256Hex(child.body)}`, pick.digest);
  const cm = JSON.parse(child.text()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const d of [cm.config.digest, ...cm.layers.map((l) => l.digest)]) {
    const b = await request(base, `/v2/${repo}/blobs/${d}`);
    assert.equal(b.status, 200, `${d}: ${b.status}`);
    assert.equal(`sha256:${createHash('sha256').update(b.body).digest('hex')}`, d);
  }
  return { list: r.body, contentType: String(r.headers['content-type']), child: child.body };
}
