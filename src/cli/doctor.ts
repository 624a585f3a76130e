// `doctor`: on a machine that runs ollama, check the path to the transparent mirror as ollama's
// server process sees it (its environment, Go's proxy rules, the certificate chain) and say in
// plain words what is wrong.
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Command } from 'commander';
import { permits, permittedNames } from '../mirror/ca.js';
import { checkHostname } from '../mirror/config.js';
import { goProxyFor } from '../mirror/goproxy.js';
import { SELFTEST_MODEL } from '../mirror/selftest.js';
import { CliError, EXIT, fail } from './common.js';

const TIMEOUT = 10_000;

/** The environment of the running `ollama serve` (Linux /proc), or null when none is found. */
function ollamaEnv(pid?: number): { env: NodeJS.ProcessEnv; from: string } | null {
  const pids = pid ? [String(pid)] : readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  for (const p of pids) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (!pid && !(cmd[0]?.endsWith('ollama') && cmd[1] === 'serve')) continue;
      const env = Object.fromEntries(readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
      return { env, from: `ollama serve (pid ${p})` };
    } catch {
      if (pid) throw new CliError(`cannot read the environment of pid ${pid} (run as root or as ollama's user)`);
    }
  }
  return null;
}

function trustFor(env: NodeJS.ProcessEnv): string[] {
  // Go on Linux: SSL_CERT_FILE (or the distribution bundle) plus every file of the system folder.
  const extra: string[] = [];
  if (env.SSL_CERT_FILE) {
    try {
      extra.push(readFileSync(env.SSL_CERT_FILE, 'utf8'));
    } catch (e) {
      throw new CliError(`SSL_CERT_FILE=${env.SSL_CERT_FILE} cannot be read (${(e as NodeJS.ErrnoException).code}): ollama will not trust the mirror`);
    }
  }
  return [...tls.rootCertificates, ...extra];
}

/** A TLS failure in words: the usual cause is a missing CA, or a CA made before the host list grew. */
function trustHint(message: string, host: string): string {
  if (/subtree violation/i.test(message)) {
    return `the CA this machine trusts may not vouch for ${host} (${message}): ${host} was added to the mirror's hosts after its CA was made; ` +
      'on the registry re-make it (ollama-registry ca init --force --host … with every host), then trust the new ca.pem here';
  }
  if (/certificate|verify|self.signed|issuer/i.test(message)) return `the certificate is not trusted (${message}): give ollama the mirror's CA (SSL_CERT_FILE)`;
  return message;
}

function tunnel(proxy: string, target: string): Promise<import('node:net').Socket> {
  const p = new URL(proxy);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: p.hostname, port: p.port || 80, method: 'CONNECT', path: `${target}:443`, headers: { Host: `${target}:443` }, timeout: TIMEOUT });
    req.once('connect', (res, socket) => (res.statusCode === 200 ? resolve(socket) : (socket.destroy(), reject(new Error(`the proxy refused CONNECT: ${res.statusCode} ${res.statusMessage}`)))));
    req.once('timeout', () => req.destroy(new Error(`the proxy ${proxy} did not answer in ${TIMEOUT / 1000} s`)));
    req.once('error', (e) => reject(new Error(`cannot reach the proxy ${proxy}: ${e.message}`)));
    req.end();
  });
}

async function probe(proxy: string | null, ca: string[], target: string): Promise<{ issuer: string; status: number; api: string | undefined }> {
  const raw = proxy ? await tunnel(proxy, target) : undefined;
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ socket: raw, host: target, port: 443, servername: target, ca, ALPNProtocols: ['http/1.1'], timeout: TIMEOUT });
    s.once('secureConnect', () => resolve(s));
    s.once('timeout', () => s.destroy(new Error('the TLS handshake timed out')));
    s.once('error', (e) => reject(new Error(trustHint(e.message, target))));
  });
  const cn = socket.getPeerCertificate(true).issuer?.CN;
  const issuer = (Array.isArray(cn) ? cn[0] : cn) ?? '?';
  return new Promise((resolve, reject) => {
    const req = http.request({ createConnection: () => socket, host: target, path: '/v2/', headers: { Host: target, 'User-Agent': 'ollama-registry-doctor' }, timeout: TIMEOUT }, (res) => {
      res.resume();
      socket.destroy();
      resolve({ issuer, status: res.statusCode ?? 0, api: res.headers['docker-distribution-api-version'] as string | undefined });
    });
    req.once('timeout', () => req.destroy(new Error('GET /v2/ timed out')));
    req.once('error', reject);
    req.end();
  });
}

/**
 * After a failed handshake in proxy mode: compare the registry's current CA with what ollama
 * trusts. A CA re-made with `ca init --force` (the host list grew, e.g. hf.co was added) must be
 * trusted again on every client; one made before a host was added cannot vouch for it.
 */
async function caAdvice(proxy: string, trusted: string[], target: string): Promise<string[]> {
  let pem: string;
  try {
    const res = await fetch(new URL('/mirror/ca.pem', proxy), { signal: AbortSignal.timeout(TIMEOUT), redirect: 'error' });
    if (!res.ok) return [];
    pem = (await res.text()).slice(0, 64 * 1024);
    const fingerprint = new X509Certificate(pem).fingerprint256;
    const known = trusted.some((t) => {
      try {
        return new X509Certificate(t).fingerprint256 === fingerprint;
      } catch {
        return false;
      }
    });
    const out: string[] = [];
    const permitted = permittedNames(pem);
    if (permitted && !permits(permitted, target)) {
      out.push(`FAIL the registry's CA may vouch only for ${permitted.join(', ')}, not ${target}: it was made before ${target} was intercepted; ` +
        `re-make it on the registry (ollama-registry ca init --force --host … with every host), then trust the new ca.pem here`);
    }
    if (!known) {
      out.push(`FAIL ollama does not trust the registry's CA (${proxy}/mirror/ca.pem, SHA-256 ${fingerprint.slice(0, 23)}…); ` +
        'if the CA was re-made (ca init --force, e.g. after adding a host to mirror.hosts), every client must trust the new one');
    }
    return out;
  } catch {
    return [];
  }
}

export function registerDoctor(program: Command): void {
  program.command('doctor')
    .description("on a machine running ollama: check its path to the transparent mirror (environment, Go's proxy rules, certificate) and say what is wrong")
    .option('--pid <pid>', 'the ollama serve process (default: found in /proc)')
    .option('--self', "use this shell's environment instead of ollama's")
    .option('--host <name>', 'the intercepted host to check (e.g. hf.co)', 'registry.ollama.ai')
    .action(async (opts) => {
      try {
        const found = opts.self ? { env: process.env, from: 'this shell' } : ollamaEnv(opts.pid ? Number(opts.pid) : undefined);
        if (!found) throw new CliError('no running `ollama serve` found; start it, give --pid, or check this shell with --self', EXIT.USAGE);
        const { env, from } = found;
        const target = checkHostname(opts.host);
        const shown = `HTTPS_PROXY=${env.HTTPS_PROXY ?? env.https_proxy ?? ''} NO_PROXY=${env.NO_PROXY ?? env.no_proxy ?? ''} SSL_CERT_FILE=${env.SSL_CERT_FILE ?? ''}`;
        const out: string[] = [`environment of ${from}: ${shown}`];
        const route = goProxyFor(`https://${target}/v2/`, env);
        const dnsOnly = route.proxy ? '' : `; that is right for DNS mode only (${target} must resolve to the registry)`;
        out.push(`${route.proxy ? 'ok  ' : 'note'} ${target}: ${route.proxy ? `through the proxy ${route.proxy}` : 'direct'} (${route.why})${dnsOnly}`);
        let ok = true;
        try {
          const r = await probe(route.proxy, trustFor(env), target);
          const ours = /ollama-registry/.test(r.issuer);
          out.push(`${ours ? 'ok  ' : 'FAIL'} TLS for ${target}: certificate from "${r.issuer}"${ours ? ' (the mirror)' : ': this is not the mirror, so pulls go to the internet'}`);
          const served = r.status === 200 && r.api === 'registry/2.0';
          out.push(`${served ? 'ok  ' : 'FAIL'} GET https://${target}/v2/ answered ${r.status}${served ? '' : ' (expected 200 from a registry)'}`);
          ok = ours && served;
        } catch (e) {
          ok = false;
          out.push(`FAIL ${(e as Error).message}`);
          if (route.proxy) out.push(...await caAdvice(route.proxy, trustFor(env), target));
        }
        out.push(ok
          ? `all good: \`ollama pull\` of short names goes through the mirror${from === 'this shell' ? ' (for a process with this environment)' : ''}\n` +
            `prove it end to end: ollama pull ${SELFTEST_MODEL}   (a few KB served by the mirror itself; not runnable; then: ollama rm ${SELFTEST_MODEL})`
          : 'not ready: fix the FAIL lines above (ollama-registry client-setup prints the steps), then restart ollama');
        process.stdout.write(`${out.join('\n')}\n`);
        process.exitCode = ok ? EXIT.OK : EXIT.FAILED;
      } catch (e) {
        fail(e);
      }
    });
}
