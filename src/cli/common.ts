// What every command shares: the --data/--config options, loading the config, and exits.
import type { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { isRegistryError } from '../errors.js';

/** Exit codes: 0 all good, 1 the work failed (or partly failed), 2 bad usage or configuration. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.FAILED) {
    super(message);
  }
}

export function withStoreOptions(cmd: Command): Command {
  return cmd
    .option('-d, --data <dir>', 'data folder: an ollama models folder (env OLLAMA_REGISTRY_DATA; default ~/.local/share/ollama-registry)')
    .option('-c, --config <file>', 'YAML configuration file (env OLLAMA_REGISTRY_CONFIG)');
}

export function configFrom(opts: { data?: string; config?: string }, flags: Record<string, unknown> = {}): Config {
  return loadConfig({ file: opts.config, flags: { data: opts.data, ...flags } });
}

/** Print a one-line error and exit with a code that says what kind of failure it was. */
export function fail(e: unknown): never {
  let code: number = EXIT.FAILED;
  let msg = e instanceof Error ? e.message : String(e);
  if (e instanceof ConfigError) code = EXIT.USAGE;
  else if (e instanceof CliError) code = e.exitCode;
  else if (isRegistryError(e)) code = e.status === 400 ? EXIT.USAGE : EXIT.FAILED;
  else if ((e as NodeJS.ErrnoException)?.code === 'EADDRINUSE') msg = `cannot listen: ${msg} (another process uses that port; pick one with --listen)`;
  else if ((e as NodeJS.ErrnoException)?.code === 'EACCES') msg = `permission denied: ${msg}`;
  process.stderr.write(`ollama-registry: ${msg}\n`);
  process.exit(code);
}
