import path from 'node:path';
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { importFolder } from '../registry/importer.js';
import { CliError, configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { formatBytes } from './format.js';

export function registerImport(program: Command): void {
  withStoreOptions(program.command('import'))
    .argument('<dir>', 'an ollama models folder (e.g. ~/.ollama/models)')
    .description('bring the models of another ollama models folder into the data folder, verifying every blob')
    .action(async (dir: string, opts) => {
      try {
        const config = configFrom(opts);
        const app = await openApp(config, createLogger({ level: 'warn', destination: process.stderr }));
        const src = path.resolve(dir);
        if (src === path.resolve(config.data)) throw new CliError(`${dir} is the data folder itself`, EXIT.USAGE);
        const r = await importFolder(app, src, (e) => {
          if (e.kind === 'problem') process.stderr.write(`bad: ${e.problem.file}: ${e.problem.reason}\n`);
        });
        for (const n of r.manifests.added) process.stdout.write(`added    ${n}\n`);
        for (const n of r.manifests.updated) process.stdout.write(`updated  ${n}\n`);
        const b = r.blobs;
        process.stdout.write(
          `imported ${r.manifests.added.length + r.manifests.updated.length} model tag(s) (${r.manifests.unchanged.length} already up to date); ` +
          `blobs: ${b.linked} linked, ${b.copied} copied (${formatBytes(b.bytes)}), ${b.present} already present` +
          (r.badBlobs.length + r.skippedManifests.length > 0 ? `; ${r.badBlobs.length} bad blob(s), ${r.skippedManifests.length} model tag(s) left out` : '') + '\n',
        );
        process.exitCode = r.badBlobs.length + r.skippedManifests.length > 0 ? EXIT.FAILED : EXIT.OK;
      } catch (e) {
        fail(e);
      }
    });
}
