import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { importTar } from '../registry/transfer/import-tar.js';
import { importFolder, type ImportReport } from '../registry/transfer/importer.js';
import { CliError, configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { formatBytes } from './format.js';
import { progress } from './progress.js';

export function registerImport(program: Command): void {
  withStoreOptions(program.command('import'))
    .argument('<source>', 'an ollama models folder (e.g. ~/.ollama/models), a tar of one (from `export`), or - for a tar on stdin')
    .description('bring the models of another ollama models folder or bundle into the data folder, verifying every blob')
    .action(async (source: string, opts) => {
      try {
        const config = configFrom(opts);
        const app = await openApp(config, createLogger({ level: 'warn', destination: process.stderr }));
        const onEvent = (e: Parameters<NonNullable<Parameters<typeof importFolder>[2]>>[0]) => {
          if (e.kind === 'problem') process.stderr.write(`bad: ${e.problem.file}: ${e.problem.reason}\n`);
        };
        let r: ImportReport;
        const st = source === '-' ? null : await stat(source).catch(() => null);
        if (source !== '-' && !st) throw new CliError(`${source}: no such file or folder`);
        if (st?.isDirectory()) {
          const src = path.resolve(source);
          if (src === path.resolve(config.data)) throw new CliError(`${source} is the data folder itself`, EXIT.USAGE);
          r = await importFolder(app, src, onEvent);
        } else {
          const input = source === '-' ? process.stdin : createReadStream(source, { highWaterMark: 1 << 20 });
          const bar = progress('import', st?.size ?? 0, 'bytes');
          let n = 0;
          const counted = input.pipe(new Transform({
            transform(chunk: Buffer, _enc, cb) {
              bar.update((n += chunk.length));
              cb(null, chunk);
            },
          }));
          input.on('error', (e: Error) => counted.destroy(e));
          r = await importTar(app, counted, onEvent).finally(() => bar.stop());
        }
        for (const n of r.manifests.added) process.stdout.write(`added    ${n}\n`);
        for (const n of r.manifests.updated) process.stdout.write(`updated  ${n}\n`);
        const b = r.blobs;
        const problems = r.badBlobs.length + r.skippedManifests.length + (r.refused?.length ?? 0) + (r.incomplete ? 1 : 0);
        if (r.incomplete) process.stderr.write(`incomplete: ${r.incomplete}\n`);
        process.stdout.write(
          `imported ${r.manifests.added.length + r.manifests.updated.length} model tag(s) (${r.manifests.unchanged.length} already up to date); ` +
          `blobs: ${b.linked} linked, ${b.copied} copied (${formatBytes(b.bytes)}), ${b.present} already present` +
          (problems > 0 ? `; ${r.badBlobs.length} bad blob(s), ${r.skippedManifests.length} model tag(s) left out` : '') +
          (r.refused?.length ? `, ${r.refused.length} entry(ies) refused` : '') + '\n',
        );
        process.exitCode = problems > 0 ? EXIT.FAILED : EXIT.OK;
      } catch (e) {
        fail(e);
      }
    });
}
