// The web page at /mirror/setup: the client steps for every OS, in both modes, as the text
// `ollama-registry client-setup --os X` prints (setup.ts is the one source), with the CA's
// download link and fingerprint, the self-test and the limits. Rendered here as static HTML
// (no script), every piece of text escaped.
import { X509Certificate } from 'node:crypto';
import { CLIENT_OSES, setupText, type ClientOs } from './setup.js';
import { SELFTEST_MODEL } from './selftest.js';

const OS_NAMES: Record<ClientOs, string> = { linux: 'Linux (systemd)', macos: 'macOS', windows: 'Windows', docker: 'Docker' };

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface SetupPage {
  registry: string;
  mode: 'proxy' | 'dns';
  hosts: string[];
  caPem: string | null;
}

export function setupPage(p: SetupPage): string {
  let fingerprint = '';
  try {
    if (p.caPem) fingerprint = new X509Certificate(p.caPem).fingerprint256;
  } catch {
    // an unreadable ca.pem: the link still says where it is, the line below says it is missing
  }
  const caNote = fingerprint ? ` (SHA-256 <code>${esc(fingerprint)}</code>)` : ' (not made yet: ollama-registry ca init)';
  const other = p.mode === 'proxy' ? 'dns' : 'proxy';
  const sections = CLIENT_OSES.map((os) => `<section id="${os}">
<h2>${esc(OS_NAMES[os])}</h2>
<p>Plain text: <a href="/mirror/setup?os=${os}&amp;mode=${p.mode}">/mirror/setup?os=${os}&amp;mode=${p.mode}</a>, or run
<code>ollama-registry client-setup --os ${os} --mode ${p.mode} --registry ${esc(p.registry)}</code>${os === 'linux' ? ' (add <code>--apply</code> to do it, as root)' : ''}.</p>
<pre>${esc(setupText({ os, mode: p.mode, registry: p.registry }))}</pre>
<details><summary>Undo</summary><pre>${esc(setupText({ os, mode: p.mode, registry: p.registry, uninstall: true }))}</pre></details>
</section>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>ollama-registry: transparent mirror set-up</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/app.css">
</head>
<body>
<header class="top"><a class="brand" href="/">ollama-registry</a></header>
<main id="main" class="setup">
<h1>Pull through this registry with unchanged names</h1>
<p>After these steps, <code>ollama pull gemma2:2b</code> on a client machine is served by this registry
(intercepted hosts: ${p.hosts.map((h) => `<code>${esc(h)}</code>`).join(', ')}). Steps for
<strong>${p.mode === 'proxy' ? 'proxy mode' : 'DNS mode'}</strong>; <a href="/mirror/setup?mode=${other}">show ${other === 'dns' ? 'DNS' : 'proxy'} mode</a>.</p>
<p>The mirror's certificate authority: <a href="/mirror/ca.pem" download="ollama-registry-ca.pem">ca.pem</a>${caNote}.
It may vouch only for the intercepted hosts and this registry's own names.</p>
<nav><ul>${CLIENT_OSES.map((os) => `<li><a href="#${os}">${esc(OS_NAMES[os])}</a></li>`).join('')}</ul></nav>
${sections}
<section id="check">
<h2>Check it</h2>
<pre>ollama pull ${SELFTEST_MODEL}    # a few KB served by the mirror itself, no internet needed
ollama rm ${SELFTEST_MODEL}
ollama-registry doctor             # on Linux: checks ollama's environment, proxy rules and certificate</pre>
</section>
<section id="limits">
<h2>Limits</h2>
<ul>
<li>ollama reads its environment once, at start: restart it after any change.</li>
<li>Tensor (MLX, safetensors) models are fetched by ollama's transfer client, which ignores <code>HTTPS_PROXY</code>: they need DNS mode.</li>
<li><code>HTTP_PROXY</code> would also catch <code>ollama pull --insecure</code> traffic to other registries: set only <code>HTTPS_PROXY</code>.</li>
<li>Pushes and sign-in for the intercepted hosts are relayed to the real registry unchanged; other sites are tunnelled only when allowed (default <code>ollama.com:443</code>).</li>
</ul>
</section>
</main>
</body>
</html>
`;
}
