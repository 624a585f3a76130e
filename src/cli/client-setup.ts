// `client-setup`: what a machine running ollama needs to pull through the transparent mirror.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { leafProblem } from '../mirror/ca.js';
import { CLIENT_OSES, LINUX_CA, LINUX_DROPIN, linuxDropIn, setupText, type ClientOs } from '../mirror/setup.js';
import { CliError, EXIT, fail } from './common.js';

const run = promisify(execFile);

async function fetchCa(registry: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${registry}/mirror/ca.pem`, { signal: AbortSignal.timeout(10_000), redirect: 'error' });
  } catch (e) {
    throw new CliError(`cannot reach ${registry}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new CliError(`${registry}/mirror/ca.pem answered ${res.status}: is it serving with --mirror?`);
  const pem = (await res.text()).slice(0, 64 * 1024);
  // A CA only: a leaf-shaped answer or garbage is refused, whatever the server said.
  if (!/^-----BEGIN CERTIFICATE-----/.test(pem) || leafProblem(pem, []) !== null) throw new CliError(`${registry}/mirror/ca.pem is not a usable certificate`);
  return pem;
}

export function registerClientSetup(program: Command): void {
  program.command('client-setup')
    .description('print (or, on Linux with --apply, do) what a machine running ollama needs to pull through the transparent mirror')
    .requiredOption('--registry <url>', 'the registry as that machine reaches it, e.g. http://10.0.0.5:8080')
    .option('--os <os>', `${CLIENT_OSES.join('|')}`, 'linux')
    .option('--mode <mode>', 'proxy (HTTPS_PROXY) or dns (registry.ollama.ai resolves to the registry)', 'proxy')
    .option('--uninstall', 'undo it')
    .option('--apply', 'Linux: write the CA and the systemd drop-in for ollama.service, then restart it (as root)')
    .option('--prefix <dir>', 'with --apply: write under this folder instead of / (for images and tests)')
    .option('--no-restart', 'with --apply: do not run systemctl')
    .action(async (opts) => {
      try {
        if (!CLIENT_OSES.includes(opts.os)) throw new CliError(`--os must be one of ${CLIENT_OSES.join(', ')}`, EXIT.USAGE);
        if (opts.mode !== 'proxy' && opts.mode !== 'dns') throw new CliError('--mode must be proxy or dns', EXIT.USAGE);
        let registry: string;
        try {
          const u = new URL(opts.registry);
          if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
          registry = u.origin;
        } catch {
          throw new CliError(`--registry must be a URL such as http://10.0.0.5:8080, got ${JSON.stringify(opts.registry)}`, EXIT.USAGE);
        }
        if (!opts.apply) {
          process.stdout.write(setupText({ os: opts.os as ClientOs, registry, mode: opts.mode, uninstall: opts.uninstall }));
          return;
        }
        if (opts.os !== 'linux') throw new CliError('--apply works on Linux only; without it, the steps for this OS are printed', EXIT.USAGE);
        const root = path.resolve(opts.prefix ?? '/');
        const caFile = path.join(root, LINUX_CA);
        const dropIn = path.join(root, LINUX_DROPIN);
        if (opts.uninstall) {
          await rm(dropIn, { force: true });
          await rm(caFile, { force: true });
        } else {
          const pem = await fetchCa(registry);
          await mkdir(path.dirname(caFile), { recursive: true });
          await mkdir(path.dirname(dropIn), { recursive: true });
          await writeFile(caFile, pem, { mode: 0o644 });
          await writeFile(dropIn, linuxDropIn(registry, opts.mode), { mode: 0o644 });
        }
        process.stdout.write(`${opts.uninstall ? 'removed' : 'wrote'} ${caFile} and ${dropIn}\n`);
        if (opts.restart) {
          try {
            await run('systemctl', ['daemon-reload'], { timeout: 30_000 });
            await run('systemctl', ['restart', 'ollama'], { timeout: 60_000 });
            process.stdout.write('restarted ollama.service\n');
          } catch (e) {
            throw new CliError(`could not restart ollama (${(e as Error).message.split('\n')[0]}); run: systemctl daemon-reload && systemctl restart ollama`);
          }
        }
      } catch (e) {
        fail(e);
      }
    });
}
