// Helpers for scripts/image-smoke.sh (run as `node dist/test/support/image-smoke.js CMD …`):
//   seed DIR [MODEL]              make a small model (library/MODEL:latest, default smoke) in ollama layout in DIR
//   wait URL T0_MS [TIMEOUT_S]    poll URL until it answers 200; print the ms since T0_MS (epoch ms)
//   pull BASE NAME DEST [SEEDED]  pull NAME from BASE as ollama does into DEST; check every byte
//   web BASE NAME                 the web catalog: page, script, CSS, icon and API answer; Chromium
//                                 shows NAME in the catalog and on its model page, with no page error
// Without a command it does nothing (node --test runs every file under test/).
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeModel } from './models.js';

const UA = 'ollama/0.12.3 (amd64 linux) Go/go1.24.1';

interface Res { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

function get(url: string, opts: { method?: string; headers?: Record<string, string>; headersOnly?: boolean } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      if (opts.headersOnly) {
        // ollama's probe reads only the headers and hangs up.
        res.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.alloc(0) });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/** The legacy pull sequence (protocol §2.3): manifest, then per blob HEAD, probe GET, ranged parts. */
async function pull(base: string, name: string, dest: string): Promise<string> {
  const [repo, tag = 'latest'] = name.split(':') as [string, string?];
  const mf = await get(`${base}/v2/${repo}/manifests/${tag}`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json', 'User-Agent': UA } });
  if (mf.status !== 200) throw new Error(`pull model manifest: ${mf.status}: ${mf.body.toString()}`);
  const manifest = JSON.parse(mf.body.toString()) as { config: { digest: string; size: number }; layers: Array<{ digest: string; size: number }> };
  let total = 0;
  for (const d of [...manifest.layers, manifest.config]) {
    const blobUrl = `${base}/v2/${repo}/blobs/${d.digest}`;
    const head = await get(blobUrl, { method: 'HEAD', headers: { 'User-Agent': UA } });
    if (head.status !== 200 || Number(head.headers['content-length']) !== d.size) throw new Error(`HEAD ${d.digest}: ${head.status}, size ${head.headers['content-length']} (want ${d.size})`);
    const probe = await get(blobUrl, { headers: { 'User-Agent': UA }, headersOnly: true });
    if (probe.status !== 200 || !probe.headers.location) throw new Error(`probe GET ${d.digest}: ${probe.status}, Location ${probe.headers.location}`);
    const direct = new URL(probe.headers.location, blobUrl).toString();
    const parts: Buffer[] = [];
    const partSize = Math.max(1, Math.ceil(d.size / 4));
    for (let off = 0; off < d.size; off += partSize) {
      const end = Math.min(d.size, off + partSize) - 1;
      const r = await get(direct, { headers: { Range: `bytes=${off}-${end}`, 'User-Agent': 'Go-http-client/1.1' } });
      if (r.status !== 206 || r.body.length !== end - off + 1) throw new Error(`part ${off}-${end} of ${d.digest}: ${r.status}, ${r.body.length} bytes`);
      parts.push(r.body);
    }
    const bytes = Buffer.concat(parts);
    const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (got !== d.digest) throw new Error(`digest mismatch, file must be downloaded again: want ${d.digest}, got ${got}`);
    await mkdir(path.join(dest, 'blobs'), { recursive: true });
    await writeFile(path.join(dest, 'blobs', `sha256-${d.digest.slice(7)}`), bytes);
    total += bytes.length;
  }
  const host = new URL(base).host;
  const mfPath = path.join(dest, 'manifests', host, ...repo.split('/'), tag);
  await mkdir(path.dirname(mfPath), { recursive: true });
  await writeFile(mfPath, mf.body);
  return `pulled ${name}: ${manifest.layers.length + 1} blobs, ${total} bytes, every digest verified`;
}

async function wait(url: string, t0: number, timeoutS: number): Promise<string> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    try {
      const r = await get(url);
      if (r.status === 200) return String(Date.now() - t0);
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutS} s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The web catalog as a user's browser gets it from BASE; NAME is namespace/model. */
async function web(base: string, name: string): Promise<string> {
  const want: Array<[string, RegExp, RegExp]> = [
    ['/', /^text\/html/, /<script src="\/ui\/app\.js"/],
    ['/ui/app.js', /^text\/javascript/, /\S/],
    ['/ui/app.css', /^text\/css/, /\S/],
    ['/ui/favicon.svg', /^image\/svg\+xml/, /<svg/],
    ['/api/ui/models', /^application\/json/, new RegExp(`"model":"${name.split('/')[1]}"`)],
  ];
  for (const [p, type, body] of want) {
    const r = await get(`${base}${p}`);
    const text = r.body.toString();
    if (r.status !== 200 || !type.test(String(r.headers['content-type'])) || !body.test(text)) {
      throw new Error(`GET ${p}: ${r.status} ${r.headers['content-type']}: ${text.slice(0, 200)}`);
    }
    if (r.headers['x-content-type-options'] !== 'nosniff') throw new Error(`GET ${p}: no X-Content-Type-Options: nosniff`);
  }
  const { launchBrowser, takePageErrors } = await import('./browser.js');
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    const link = page.locator('#catalog .row a.name', { hasText: name });
    await link.waitFor({ timeout: 30_000 });
    await link.click();
    const [ns, model] = name.split('/') as [string, string];
    await page.locator('h1', { hasText: `${model}:latest` }).waitFor({ timeout: 30_000 });
    const pull = await page.locator('button.copy').first().getAttribute('data-copy');
    if (pull !== `ollama pull --insecure ${new URL(base).host}/${ns}/${model}:latest`) throw new Error(`the model page's pull command is ${pull}`);
    const errors = takePageErrors();
    if (errors.length) throw new Error(errors.join('\n'));
  } finally {
    await browser.close();
  }
  return `web catalog: /, script, CSS, icon and /api/ui/models answer; Chromium shows ${name} in the catalog and on its page, no page errors`;
}

const [cmd, ...args] = process.argv.slice(2);
const commands: Record<string, () => Promise<string>> = {
  seed: async () => {
    const m = await makeModel(args[0]!, { model: args[1] ?? 'smoke', layers: [
      { mediaType: 'application/vnd.ollama.image.model', size: 3_000_000 },
      { mediaType: 'application/vnd.ollama.image.template', content: '{{ .Prompt }}' },
    ] });
    return `seeded library/${args[1] ?? 'smoke'}:latest (${m.blobs.length} blobs) in ${args[0]}`;
  },
  wait: () => wait(args[0]!, Number(args[1]), Number(args[2] ?? 60)),
  web: () => web(args[0]!, args[1]!),
  pull: async () => {
    const out = await pull(args[0]!, args[1]!, args[2]!);
    // The pulled manifest must be byte for byte what was seeded.
    if (args[3]) {
      const [repo, tag = 'latest'] = args[1]!.split(':') as [string, string?];
      const a = await readFile(path.join(args[3], 'manifests', 'registry.ollama.ai', ...repo.split('/'), tag));
      const b = await readFile(path.join(args[2]!, 'manifests', new URL(args[0]!).host, ...repo.split('/'), tag));
      if (!a.equals(b)) throw new Error('the pulled manifest differs from the seeded one');
    }
    return out;
  },
};

if (cmd && commands[cmd]) {
  commands[cmd]!().then((out) => console.log(out), (e: Error) => {
    console.error(`image-smoke ${cmd}: ${e.message}`);
    process.exit(1);
  });
}
