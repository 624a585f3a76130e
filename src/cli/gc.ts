// `ollama-registry gc`: free blobs no manifest references, leftover staging files, and (with a
// size cap) the least-recently-pulled cached models. Safe while `serve` runs.
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { runGc, type GcReport } from '../registry/housekeeping/gc.js';
import { configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { formatAgo, formatBytes, formatSeconds } from './format.js';
import { progress } from './progress.js';

export function gcSummary(r: GcReport, graceSeconds: number, maxSize: number): string[] {
  const would = r.dryRun ? 'would remove' : 'removed';
  const lines = [
    `${r.manifests} manifest(s), ${r.blobs.total} blob(s): ${r.blobs.referenced} in use, ${r.blobs.young} unreferenced but younger than ${formatSeconds(graceSeconds)} (kept)` +
      (r.blobs.rescued ? `, ${r.blobs.rescued} referenced again during the run (kept)` : ''),
  ];
  for (const e of r.evicted) lines.push(`${r.dryRun ? 'would evict' : 'evicted'} ${e.name} (last pulled ${formatAgo(e.lastPulled)}; frees ${formatBytes(e.freed)})`);
  for (const n of r.untaggedRemoved) lines.push(`${r.dryRun ? 'would remove' : 'removed'} untagged manifest ${n}`);
  lines.push(`${would} ${r.removed.length} blob(s), ${formatBytes(r.bytesFreed)}`);
  if (r.staging.removed.length) lines.push(`${would} ${r.staging.removed.length} leftover staging file(s)/folder(s), ${formatBytes(r.staging.bytes)}`);
  lines.push(`blobs ${r.dryRun ? 'would take' : 'take'} ${formatBytes(r.usedBytes)}${maxSize ? ` of the ${formatBytes(maxSize)} cap` : ''}`);
  if (r.overCap) lines.push(`still ${formatBytes(r.overCap)} over the cap: the rest is pushed/local, pinned or pulled within ${formatSeconds(graceSeconds)}`);
  if (r.listCalls !== undefined) lines.push(`${r.listCalls} listing request(s) to the store`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines;
}

export function registerGc(program: Command): void {
  withStoreOptions(program.command('gc'))
    .description('delete blobs no model uses and leftover staging files; with a size cap, evict least-recently-pulled cached models')
    .option('-n, --dry-run', 'only report what would be freed')
    .option('--max-size <size>', 'size cap for blobs, e.g. 500GB (config storage.maxSize)')
    .option('--grace <duration>', 'never delete blobs younger than this, e.g. 1h (config storage.gcGrace; default 1h)')
    .option('--json', 'print the report as JSON')
    .action(async (opts) => {
      try {
        const config = configFrom(opts, { 'storage.maxSize': opts.maxSize, 'storage.gcGrace': opts.grace });
        const app = await openApp(config, createLogger({ level: 'warn', destination: process.stderr }));
        const bar = opts.json || !process.stderr.isTTY ? undefined : progress(opts.dryRun ? 'gc (dry run)' : 'gc', 0, 'items');
        const r = await runGc(app, {
          dryRun: opts.dryRun === true,
          graceMs: config.storage.gcGraceSeconds * 1000,
          maxSize: config.storage.maxSize,
          onProgress: (done, total) => {
            bar?.setTotal(total);
            bar?.update(done);
          },
        });
        bar?.stop();
        if (opts.json) process.stdout.write(JSON.stringify(r, null, 1) + '\n');
        else process.stdout.write(gcSummary(r, config.storage.gcGraceSeconds, config.storage.maxSize).join('\n') + '\n');
        process.exitCode = EXIT.OK;
      } catch (e) {
        fail(e);
      }
    });
}
