// `ollama-registry rm NAME...`: remove tags; their blobs go at the next gc when no other tag uses them.
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { findByName } from '../registry/manifests/lookup.js';
import { refName } from '../registry/manifests/manifest-index.js';
import { Pins } from '../registry/housekeeping/pins.js';
import { configFrom, EXIT, fail, withStoreOptions } from './common.js';

export function registerRm(program: Command): void {
  withStoreOptions(program.command('rm'))
    .argument('<names...>', 'model names as you would pull them (gemma2:2b, hf.co/user/repo:Q4_K_M)')
    .description('remove model tags (their blobs are freed by the next gc)')
    .action(async (names: string[], opts) => {
      try {
        const app = await openApp(configFrom(opts), createLogger({ level: 'warn', destination: process.stderr }));
        const pins = new Pins(app.driver);
        let missing = 0;
        for (const n of names) {
          const m = await findByName(app.manifests, n);
          if (!m) {
            process.stderr.write(`ollama-registry: ${n} is not in this registry (see ollama-registry ls)\n`);
            missing++;
            continue;
          }
          await app.manifests.delete(m);
          await pins.set(refName(m), false);
          process.stdout.write(`removed ${refName(m)}\n`);
        }
        if (missing < names.length) process.stdout.write('blobs no other tag uses are freed by the next `ollama-registry gc`\n');
        process.exitCode = missing ? EXIT.FAILED : EXIT.OK;
      } catch (e) {
        fail(e);
      }
    });
}
