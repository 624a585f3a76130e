// `ca init`: the transparent mirror's certificate authority and its one leaf certificate.
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { makeLeaf, makeRoot, rootProblem } from '../mirror/ca.js';
import { checkHostname, defaultMirrorDir, DEFAULT_MIRROR_HOSTS, KNOWN_MIRROR_HOSTS, listOf } from '../mirror/config.js';
import { CliError, EXIT, fail } from './common.js';
import { writeFileAtomic } from '../storage/local.js';
import { isIP } from 'node:net';

function names(hosts: string[], own: string[]): string[] {
  const out = [...hosts.map(checkHostname)];
  for (const n of own) out.push(isIP(n) ? n : checkHostname(n));
  return [...new Set(out)];
}

export function registerCa(program: Command): void {
  const ca = program.command('ca').description("the transparent mirror's certificate authority (see README: the transparent mirror)");
  ca.command('init')
    .description('make a root CA limited (name constraints) to the mirrored hosts and this registry\'s own names, and the certificate the mirror serves')
    .option('--dir <dir>', `where to write ca.pem, ca.key, leaf.pem, leaf.key (default ${defaultMirrorDir()}; keep it outside the data folder)`)
    .option('--host <name...>', `hosts to intercept, as mirror.hosts (default ${DEFAULT_MIRROR_HOSTS.join(', ')}; also known: ${KNOWN_MIRROR_HOSTS.join(', ')})`)
    .option('--name <name...>', "this registry's own DNS names or IP addresses, also allowed by the CA")
    .option('--renew-leaf', 'keep the CA, make a new leaf certificate (clients need no change)')
    .option('--force', 'replace an existing CA (every client must trust the new one)')
    .action(async (opts) => {
      try {
        const dir = path.resolve(opts.dir ?? defaultMirrorDir());
        const hosts = opts.host ? listOf(opts.host.join(',')).map(checkHostname) : [...DEFAULT_MIRROR_HOSTS];
        const all = names(hosts, opts.name ? listOf(opts.name.join(',')).map(String) : []);
        const caPem = path.join(dir, 'ca.pem');
        const caKey = path.join(dir, 'ca.key');
        let root: { cert: string; key: string };
        if (opts.renewLeaf) {
          try {
            root = { cert: await readFile(caPem, 'utf8'), key: await readFile(caKey, 'utf8') };
          } catch {
            throw new CliError(`--renew-leaf needs the CA in ${dir} (ca.pem and ca.key); run ca init first`, EXIT.USAGE);
          }
          const grown = rootProblem(root.cert, all, dir);
          if (grown) throw new CliError(grown, EXIT.USAGE);
        } else {
          if (existsSync(caPem) && !opts.force) throw new CliError(`${caPem} exists; use --renew-leaf for a new leaf, or --force to replace the CA`, EXIT.USAGE);
          root = await makeRoot(all);
        }
        const leaf = await makeLeaf(root, all);
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await chmod(dir, 0o700);
        // Each file whole or not at all (a crash mid-write must not leave a truncated key); the key before its certificate.
        const put = (file: string, text: string, mode: number) => writeFileAtomic(file, (part) => writeFile(part, text, { mode }));
        if (!opts.renewLeaf) {
          await put(caKey, root.key, 0o600);
          await put(caPem, `${root.cert.trim()}\n`, 0o644);
        }
        await put(path.join(dir, 'leaf.key'), leaf.key, 0o600);
        await put(path.join(dir, 'leaf.pem'), `${leaf.cert.trim()}\n${root.cert.trim()}\n`, 0o644); // the chain, leaf first
        process.stdout.write(`${opts.renewLeaf ? 'renewed the leaf' : 'made a CA and a leaf'} in ${dir} for ${all.join(', ')}\n` +
          `clients trust ${caPem} (ollama-registry client-setup prints how); ca.key can move off this machine until the next --renew-leaf\n` +
          `serve with: ollama-registry serve --mirror ${dir}\n`);
      } catch (e) {
        fail(e);
      }
    });
}
