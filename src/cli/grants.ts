// Options shared by `keys add` and `users add`: which namespaces, which rights.
import type { Command } from 'commander';
import { authStoreAt } from '../auth/decisions.js';
import type { AuthStore, Grant } from '../auth/store.js';
import { isValidPart } from '../names.js';
import { openDriver } from '../storage/open.js';
import { CliError, configFrom, EXIT } from './common.js';

export function withGrantOptions(cmd: Command): Command {
  return cmd
    .option('-n, --namespace <ns>', 'a namespace it may use (repeat for more; * for all)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--pull-only', 'may only pull there (default: pull and push)')
    .option('--delete', 'may also delete tags there (when the registry allows deletes)');
}

export function grantsFrom(opts: { namespace: string[]; pullOnly?: boolean; delete?: boolean }): Grant[] {
  if (opts.namespace.length === 0) throw new CliError('give at least one --namespace (the namespace in names like HOST/NAMESPACE/MODEL; * for all)', EXIT.USAGE);
  for (const ns of opts.namespace) {
    if (ns !== '*' && !isValidPart('namespace', ns)) throw new CliError(`invalid namespace ${JSON.stringify(ns)}: letters, digits, '_' and '-', or * for all`, EXIT.USAGE);
  }
  const actions: Grant['actions'] = opts.pullOnly ? ['pull'] : ['pull', 'push'];
  if (opts.delete) actions.push('delete');
  return opts.namespace.map((namespace) => ({ namespace, actions: [...actions] }));
}

export async function storeFrom(opts: { data?: string; config?: string }): Promise<AuthStore> {
  return authStoreAt(await openDriver(configFrom(opts)));
}
