// `keys add|rm|ls`: the machine keys (ollama's ~/.ollama/id_ed25519.pub) allowed in. A running
// server picks changes up within a second. `keys own`: this registry's own key, to register on
// upstreams that want ollama's key sign-in.
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { parseKeyLine } from '../auth/sshkey.js';
import { formatGrants } from '../auth/store.js';
import { openDriver } from '../storage/open.js';
import { keySourceFor, loadOwnKey } from '../upstream/key.js';
import { CliError, configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { grantsFrom, storeFrom, withGrantOptions } from './grants.js';

/** A key line, or a .pub file holding one. */
function keyLine(arg: string): string {
  if (!arg.trim().startsWith('ssh-') && statSync(arg, { throwIfNoEntry: false })?.isFile()) return readFileSync(arg, 'utf8').trim();
  return arg;
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description("machine keys allowed to pull and push (ollama's ~/.ollama/id_ed25519.pub)");

  withGrantOptions(withStoreOptions(keys.command('add')))
    .argument('<key>', 'the public key line "ssh-ed25519 AAAA…" (or a .pub file holding it)')
    .option('--comment <text>', 'a label for logs and `keys ls` (default: the comment on the key line)')
    .description('allow a machine key in the given namespaces (adding to, or changing, what it already has)')
    .action(async (arg: string, opts) => {
      try {
        let k;
        try {
          k = parseKeyLine(keyLine(arg));
        } catch (e) {
          throw new CliError((e as Error).message, EXIT.USAGE);
        }
        const grants = grantsFrom(opts);
        const comment = opts.comment ?? k.comment;
        const store = await storeFrom(opts);
        const how = await store.putKey({ key: `ssh-ed25519 ${k.blob}`, fingerprint: k.fingerprint, ...(comment ? { comment } : {}), grants });
        const entry = store.keyByFingerprint(k.fingerprint)!;
        process.stdout.write(`${how} key ${k.fingerprint}${entry.comment ? ` (${entry.comment})` : ''}: ${formatGrants(entry.grants)}\n`);
      } catch (e) {
        fail(e);
      }
    });

  withStoreOptions(keys.command('rm'))
    .argument('<key>', 'the key line (or a .pub file holding it), its base64 part, or its fingerprint (SHA256:…)')
    .description('remove a machine key (its tokens stop working at once)')
    .action(async (arg: string, opts) => {
      try {
        const gone = await (await storeFrom(opts)).removeKey(keyLine(arg)); // a .pub file works as in `keys add`
        if (!gone) throw new CliError(`no such key: ${arg.slice(0, 80)} (see: ollama-registry keys ls)`);
        process.stdout.write(`removed key ${gone.fingerprint}${gone.comment ? ` (${gone.comment})` : ''}\n`);
      } catch (e) {
        fail(e);
      }
    });

  withStoreOptions(keys.command('ls'))
    .option('--json', 'print JSON')
    .description('list the machine keys and what each may do')
    .action(async (opts) => {
      try {
        const list = (await storeFrom(opts)).keys();
        if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else for (const k of list) process.stdout.write(`${k.fingerprint}  ${k.comment ?? '-'}  ${formatGrants(k.grants)}  added ${k.added}\n`);
      } catch (e) {
        fail(e);
      }
    });

  withStoreOptions(keys.command('own'))
    .option('--upstream <name>', 'the key this upstream signs in with (when it has its own `key:`)')
    .description("print this registry's own public key line (made on first use), to register it on an upstream: ollama.com's keys page, or `keys add` on another ollama-registry")
    .action(async (opts) => {
      try {
        const config = configFrom(opts);
        const up = opts.upstream === undefined ? undefined : config.upstreams.find((u) => u.name === opts.upstream);
        if (opts.upstream !== undefined && !up) {
          throw new CliError(`no upstream is named ${JSON.stringify(opts.upstream)} (known: ${config.upstreams.map((u) => u.name).join(', ') || 'none'})`, EXIT.USAGE);
        }
        const { key, created } = await loadOwnKey(keySourceFor(await openDriver(config), config, up));
        if (created) process.stderr.write(`made a new key: ${key.file}\n`);
        process.stdout.write(`${key.line}\n`);
      } catch (e) {
        fail(e);
      }
    });
}
