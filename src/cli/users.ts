// `users add|rm|ls`: users with passwords, for OCI tools (skopeo, docker, curl). ollama itself
// signs in with its machine key (see `keys`). Passwords are stored as scrypt hashes.
import type { Command } from 'commander';
import { hashPassword } from '../auth/passwords.js';
import { formatGrants } from '../auth/store.js';
import { CliError, EXIT, fail, withStoreOptions } from './common.js';
import { grantsFrom, storeFrom, withGrantOptions } from './grants.js';

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$/;

/** A line typed without echo. */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  let s = '';
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          cleanup();
          resolve(s);
          return;
        }
        if (ch === '\u0003') {
          cleanup();
          reject(new CliError('cancelled'));
          return;
        }
        s = ch === '\u007f' || ch === '\b' ? s.slice(0, -1) : s + ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** The password: prompted twice on a terminal, else the first line of stdin. */
async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const a = await promptHidden('Password: ');
    const b = await promptHidden('Again: ');
    if (a !== b) throw new CliError('the passwords differ');
    return a;
  }
  const line = await firstLine(process.stdin, STDIN_WAIT_MS);
  if (!line) throw new CliError(`no password on stdin: pipe one line (e.g. from a password manager) or run on a terminal to be asked`, EXIT.USAGE);
  return line;
}

/** How long `users add` waits for the password on a pipe that stays open. */
const STDIN_WAIT_MS = 60_000;

/** The first line of a stream (up to 4 KiB): null when it ends empty; an error after `ms`. */
function firstLine(input: NodeJS.ReadableStream & { destroy(): void }, ms: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let got = '';
    const done = (fn: () => void) => {
      clearTimeout(timer);
      input.removeAllListeners('data');
      input.destroy();
      fn();
    };
    const timer = setTimeout(() => done(() => reject(new CliError(`no password on stdin within ${ms / 1000} s`, EXIT.USAGE))), ms);
    input.on('data', (b: Buffer) => {
      got += b.toString('utf8');
      const end = got.search(/\r?\n/);
      if (end >= 0 || got.length > 4096) done(() => resolve(got.slice(0, end >= 0 ? end : 4096)));
    });
    input.once('end', () => done(() => resolve(got === '' ? null : got)));
    input.once('error', (e) => done(() => reject(e)));
  });
}

export function registerUsers(program: Command): void {
  const users = program.command('users').description('users with passwords, for OCI tools (skopeo, docker, curl)');

  withGrantOptions(withStoreOptions(users.command('add')))
    .argument('<name>', 'user name')
    .description('add a user, or set the password and add namespaces of an existing one (password from stdin, or prompted)')
    .action(async (name: string, opts) => {
      try {
        if (!NAME_RE.test(name)) throw new CliError(`invalid user name ${JSON.stringify(name)}: letters, digits, '_', '.', '@', '-' (no ':')`, EXIT.USAGE);
        const grants = grantsFrom(opts);
        const password = await readPassword();
        if (password.length < 8) throw new CliError('the password needs at least 8 characters', EXIT.USAGE);
        const store = await storeFrom(opts);
        const how = await store.putUser({ name, password: await hashPassword(password), grants });
        process.stdout.write(`${how} user ${name}: ${formatGrants(store.user(name)!.grants)}\n`);
      } catch (e) {
        fail(e);
      }
    });

  withStoreOptions(users.command('rm'))
    .argument('<name>', 'user name')
    .description('remove a user (their tokens stop working at once)')
    .action(async (name: string, opts) => {
      try {
        if (!(await (await storeFrom(opts)).removeUser(name))) throw new CliError(`no such user: ${name.slice(0, 80)}`);
        process.stdout.write(`removed user ${name}\n`);
      } catch (e) {
        fail(e);
      }
    });

  withStoreOptions(users.command('ls'))
    .option('--json', 'print JSON (without password hashes)')
    .description('list users and what each may do')
    .action(async (opts) => {
      try {
        const list = (await storeFrom(opts)).users().map(({ password: _p, ...u }) => u);
        if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else for (const u of list) process.stdout.write(`${u.name}  ${formatGrants(u.grants)}  added ${u.added}\n`);
      } catch (e) {
        fail(e);
      }
    });
}
