// `ollama-registry verify`: re-hash every blob, quarantine corrupt ones, check every manifest.
// Exit code 0 only when all is well.
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { verifyStore } from '../registry/housekeeping/verify.js';
import { quarantineKey } from '../storage/layout.js';
import { CliError, configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { formatBytes } from './format.js';
import { progress, type Progress } from './progress.js';

export function registerVerify(program: Command): void {
  withStoreOptions(program.command('verify'))
    .description('re-hash every blob, move corrupt ones to .ollama-registry/quarantine/, check every manifest; exit code 0 only when all is well')
    .option('-j, --jobs <n>', 'blobs hashed at once (default: cores, at most 4)')
    .option('--no-quarantine', 'report corrupt blobs but leave them in place')
    .option('--json', 'print the report as JSON')
    .action(async (opts) => {
      try {
        const jobs = opts.jobs === undefined ? undefined : Number(opts.jobs);
        if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1)) throw new CliError(`--jobs: expected a whole number ≥ 1, got ${opts.jobs}`, EXIT.USAGE);
        const app = await openApp(configFrom(opts), createLogger({ level: 'warn', destination: process.stderr }));
        let bar: Progress | undefined;
        const r = await verifyStore(app, {
          concurrency: jobs,
          quarantine: opts.quarantine !== false,
          onProgress: (done, total, what) => {
            bar ??= opts.json ? undefined : progress('verify', total, 'bytes');
            bar?.update(done, what);
          },
        });
        bar?.stop();
        if (opts.json) process.stdout.write(JSON.stringify(r, null, 1) + '\n');
        else {
          const out: string[] = [`re-hashed ${r.blobs.checked} blob(s), ${formatBytes(r.blobs.bytes)}`];
          for (const c of r.corrupt) {
            out.push(`corrupt: ${c.digest}: its bytes hash to ${c.actual}` + (c.quarantined ? `; moved to ${quarantineKey(c.digest)}` : ''));
          }
          for (const b of r.broken) out.push(`broken: ${b.name}: ${b.reason}`);
          for (const s of r.stray) out.push(`note: ${s} is not a blob (left alone)`);
          out.push(r.ok ? 'all is well' : `${r.corrupt.length} corrupt blob(s), ${r.broken.length} broken model tag(s): pull or import them again, or remove them (ollama-registry rm)`);
          process.stdout.write(out.join('\n') + '\n');
        }
        process.exitCode = r.ok ? EXIT.OK : EXIT.FAILED;
      } catch (e) {
        fail(e);
      }
    });
}
