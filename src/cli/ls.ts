// `ollama-registry ls`: every model tag with its size, source, last pull.
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { listModels } from '../registry/manifests/listing.js';
import { configFrom, fail, withStoreOptions } from './common.js';
import { formatAgo, formatBytes, table } from './format.js';

export function registerLs(program: Command): void {
  withStoreOptions(program.command('ls'))
    .alias('list')
    .description('list the stored model tags: size, source (cache or local), last pull, pinned')
    .option('--json', 'JSON, with each tag\'s blobs (the input of `export --exclude-from` on the other side)')
    .action(async (opts) => {
      try {
        const app = await openApp(configFrom(opts), createLogger({ level: 'warn', destination: process.stderr }));
        const l = await listModels(app);
        if (opts.json) {
          process.stdout.write(JSON.stringify(l, null, 1) + '\n');
          return;
        }
        const rows = [['NAME', 'ID', 'SIZE', 'SOURCE', 'LAST PULL', 'MODIFIED']];
        for (const m of l.models) {
          rows.push([
            m.name, m.digest.slice(7, 19), m.error ? 'broken' : formatBytes(m.size), m.source + (m.pinned ? ', pinned' : ''),
            m.lastPulled ? formatAgo(Date.parse(m.lastPulled)) : 'never', formatAgo(Date.parse(m.modified)),
          ]);
        }
        process.stdout.write(table(rows));
        process.stdout.write(`${l.models.length} tag(s); their blobs take ${formatBytes(l.totalSize)} (shared blobs counted once)\n`);
      } catch (e) {
        fail(e);
      }
    });
}
