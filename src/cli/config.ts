// `config check [FILE]`: validate a config file and the environment, print what they set or every
// error; `config docs`: the configuration reference (the README's tables) from the settings table.
import type { Command } from 'commander';
import { checkConfig, type SetValue } from '../config.js';
import { configReference } from '../config-docs.js';
import { EXIT, fail } from './common.js';

const MAX_SHOWN = 50;

/** A value as `config check` prints it: JSON, with passwords (an upstream's) never shown. */
function shown(s: SetValue): string {
  return JSON.stringify(s.value, (k, val: unknown) => (k === 'password' ? '(hidden)' : val));
}

export function registerConfig(program: Command): void {
  const config = program.command('config').description('check the configuration, or print its reference');
  config.command('check [file]')
    .description('validate a YAML config file (default: OLLAMA_REGISTRY_CONFIG) and the OLLAMA_REGISTRY_* environment; exit 2 on errors')
    .action((file: string | undefined) => {
      try {
        const r = checkConfig({ file });
        if (r.errors.length > 0) {
          // A file of a million wrong keys gets a screenful, not a million lines.
          for (const e of r.errors.slice(0, MAX_SHOWN)) process.stderr.write(`ollama-registry: ${e.message}\n`);
          if (r.errors.length > MAX_SHOWN) process.stderr.write(`ollama-registry: … and ${r.errors.length - MAX_SHOWN} more\n`);
          process.stderr.write(`ollama-registry: ${r.errors.length} error${r.errors.length === 1 ? '' : 's'} in the configuration\n`);
          process.exit(EXIT.USAGE);
        }
        const lines = r.set.map((s) => `${s.key} = ${shown(s)} (${s.source})`);
        process.stdout.write(`ok${lines.length ? '' : ': nothing set, every setting has its default'}\n${lines.map((l) => `${l}\n`).join('')}`);
      } catch (e) {
        fail(e);
      }
    });
  config.command('docs')
    .description('print the configuration reference (markdown tables, as in the README)')
    .action(() => {
      process.stdout.write(configReference());
    });
}
