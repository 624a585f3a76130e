// The web catalog for what is not a classic ollama model, in Chromium: a docker model artifact
// (docker model pull), a container image (docker pull / podman pull), a two-platform image
// index (its platforms) and an ollama manifest list (its variants). Screenshots in test-artifacts/.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { artifact, launchBrowser } from './support/browser.js';
import { request } from './support/http.js';
import { sha256Hex } from './support/models.js';
import { makeOciImage, pushOciLayout } from './support/oci-image.js';
import { makeListModel, pushListModel } from './support/ollama-list.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir, type TestRegistry } from './support/server.js';

const AUTH = `Basic ${Buffer.from('dev:dev password').toString('base64')}`;
let reg: TestRegistry;
let browser: Browser;
let page: Page;

async function putBlob(repo: string, b: Buffer): Promise<{ digest: string; size: number }> {
  const digest = `sha256:${sha256Hex(b)}`;
  const r = await request(reg.url, `/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', headers: { Authorization: AUTH }, body: b });
  assert.equal(r.status, 201, r.text());
  return { digest, size: b.length };
}

/** A docker model artifact as `docker model push` writes one (config v0.1, a GGUF layer, a license). */
async function pushDockerModel(repo: string, tag: string): Promise<void> {
  const config = await putBlob(repo, Buffer.from(JSON.stringify({
    config: { format: 'gguf', quantization: 'Q4_K_M', parameters: '361.82 M', architecture: 'llama', size: '256.35 MiB', context_size: 8192 },
    descriptor: { created: '2025-05-01T10:00:00Z' },
    rootfs: { type: 'rootfs', diff_ids: [] },
  })));
  const gguf = await putBlob(repo, Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(4000, 7)]));
  const license = await putBlob(repo, Buffer.from('Apache License 2.0 for the smollm2 test model'));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.docker.ai.model.config.v0.1+json', ...config },
    layers: [{ mediaType: 'application/vnd.docker.ai.gguf.v3', ...gguf }, { mediaType: 'application/vnd.docker.ai.license', ...license }],
  }));
  const r = await request(reg.url, `/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { Authorization: AUTH, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest });
  assert.equal(r.status, 201, r.text());
}

/** A CNCF ModelPack model (modctl's shape: config v1 with descriptor and nested config). */
async function pushModelPack(repo: string, tag: string): Promise<void> {
  const config = await putBlob(repo, Buffer.from(JSON.stringify({
    descriptor: { name: 'qwen2.5-0.5b', family: 'qwen2' },
    config: { architecture: 'transformer', format: 'safetensors', paramSize: '0.5b', precision: 'bfloat16' },
    modelfs: { type: 'layers', diffIds: [] },
  })));
  const weights = await putBlob(repo, Buffer.from('safetensors weights '.repeat(100)));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.cncf.model.manifest.v1+json',
    config: { mediaType: 'application/vnd.cncf.model.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.cncf.model.weight.v1.tar', ...weights }],
  }));
  const r = await request(reg.url, `/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { Authorization: AUTH, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest });
  assert.equal(r.status, 201, r.text());
}

before(async () => {
  reg = await startTestRegistry();
  await addUser(reg, 'dev', 'dev password', 'ai');
  await pushDockerModel('ai/smollm2', '360M-Q4_K_M');
  await pushOciLayout(reg.url, 'ai/alpine', '3', await makeOciImage(await tempDir('oreg-ui-img-'), { seed: 'ui' }), AUTH);
  const multi = await makeOciImage(await tempDir('oreg-ui-multi-'), { seed: 'ui multi', platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }] });
  await pushOciLayout(reg.url, 'ai/multi', '1', multi, AUTH);
  await pushListModel(reg.url, 'ai/llm', '1', makeListModel('ui'), AUTH);
  await pushModelPack('ai/qwen', '0.5b');
  browser = await launchBrowser();
  page = await (await browser.newContext({ colorScheme: 'light', viewport: { width: 1280, height: 860 } })).newPage();
  page.on('pageerror', (e) => assert.fail(`error in the page: ${e.message}`));
});
after(async () => {
  await browser?.close();
  await reg?.close();
});

async function openModel(name: string, tag: string): Promise<void> {
  await page.goto(`${reg.url}/`);
  await page.locator('#catalog .row', { hasText: name }).locator('.chip', { hasText: tag }).click();
  await page.locator('h1').filter({ hasText: `${name.split('/')[1]}:${tag}` }).waitFor();
}

const fact = (k: string) => page.locator('.facts div', { has: page.locator('dt', { hasText: new RegExp(`^${k}$`) }) }).locator('dd').textContent();
const copies = () => page.locator('button.copy').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-copy')));

test('the catalog marks docker models, container images and ollama lists', async () => {
  await page.goto(`${reg.url}/`);
  await page.locator('#catalog .row').first().waitFor();
  const kind = (name: string) => page.locator('#catalog .row', { hasText: name }).locator('.badge.kind').textContent();
  assert.equal(await kind('ai/smollm2'), 'docker model');
  assert.equal(await kind('ai/alpine'), 'container image');
  assert.equal(await kind('ai/llm'), 'ollama model list');
  await page.screenshot({ path: await artifact('catalog-artifacts.png'), fullPage: true });
});

test('a docker model artifact: its facts, GGUF and license layers, and `docker model pull` instead of ollama pull', async () => {
  await openModel('ai/smollm2', '360M-Q4_K_M');
  assert.equal(await fact('Family'), 'llama');
  assert.equal(await fact('Parameters'), '361.82 M');
  assert.equal(await fact('Quantization'), 'Q4_K_M');
  assert.equal(await fact('Format'), 'gguf');
  assert.match(await fact('Context length') ?? '', /^8,192/);
  assert.deepEqual(await page.locator('table.layers tbody td:first-child').allTextContents(), ['gguf.v3', 'license']);
  await page.locator('summary', { hasText: 'License' }).click();
  assert.equal(await page.locator('details.text', { hasText: 'License' }).locator('pre').textContent(), 'Apache License 2.0 for the smollm2 test model');
  assert.deepEqual(await copies(), [`docker model pull ${reg.hostPort}/ai/smollm2:360M-Q4_K_M`]);
  assert.equal(await page.getByText('ollama pull').count(), 0);
  await page.screenshot({ path: await artifact('model-docker-model.png'), fullPage: true });
});

test('a container image: platform, docker pull and podman pull; a multi-platform image lists its platforms', async () => {
  await openModel('ai/alpine', '3');
  assert.equal(await fact('Platform'), 'linux/amd64');
  assert.deepEqual(await copies(), [`docker pull ${reg.hostPort}/ai/alpine:3`, `podman pull --tls-verify=false ${reg.hostPort}/ai/alpine:3`]);
  assert.equal(await page.getByText('ollama pull').count(), 0);
  await page.screenshot({ path: await artifact('model-container-image.png'), fullPage: true });
  await openModel('ai/multi', '1');
  assert.deepEqual(await page.locator('table.children tbody td:first-child').allTextContents(), ['linux/amd64', 'linux/arm64']);
  assert.equal((await copies())[0], `docker pull ${reg.hostPort}/ai/multi:1`);
});

test('an ollama manifest list shows its variants (runner, format) and the ollama pull command', async () => {
  await openModel('ai/llm', '1');
  assert.deepEqual(await page.locator('table.children tbody tr').evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll('td')].slice(0, 2).map((td) => td.textContent))),
    [['ggml', 'gguf'], ['mlx', 'safetensors']]);
  assert.match((await copies())[0] ?? '', /^ollama pull --insecure .*\/ai\/llm:1$/);
  await page.screenshot({ path: await artifact('model-ollama-list.png'), fullPage: true });
});

test('a ModelPack model: its facts from descriptor and config, docker model pull', async () => {
  const api = (await request(reg.url, '/api/ui/models')).json() as { models: Array<{ model: string; tags: Array<Record<string, unknown>> }> };
  const t = api.models.find((m) => m.model === 'qwen')!.tags[0]!;
  assert.deepEqual([t.kind, t.family, t.parameterSize, t.quantization], ['modelpack', 'qwen2', '0.5b', 'bfloat16']);
  await openModel('ai/qwen', '0.5b');
  assert.deepEqual(await copies(), [`docker model pull ${reg.hostPort}/ai/qwen:0.5b`]);
  assert.deepEqual(await page.locator('table.layers tbody td:first-child').allTextContents(), ['weight.v1.tar']);
});
