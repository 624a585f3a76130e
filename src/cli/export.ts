// `ollama-registry export NAME... --to DIR|FILE.tar|-`: an ollama-layout bundle for another
// machine (drops into ~/.ollama/models or into `ollama-registry import`).
import { createWriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { fromFsError } from '../errors.js';
import { createLogger } from '../log.js';
import { exportToDir, exportToTar, parseHave, planExport, type ExportResult, type ExportSelection } from '../registry/transfer/exporter.js';
import { writeFileAtomic } from '../storage/local.js';
import { parseDuration } from '../units.js';
import { CliError, configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { formatBytes } from './format.js';
import { progress } from './progress.js';

function parseSince(v: string): number {
  const ago = /^\d/.test(v) && !/[-:T]/.test(v) ? parseDuration(v) : null;
  if (ago !== null) return Date.now() - ago * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new CliError(`--since: expected a date (2025-06-01, 2025-06-01T12:00:00Z) or an age (7d, 12h), got ${JSON.stringify(v)}`, EXIT.USAGE);
  return t;
}

/** A tar file appears only when complete: written as FILE.partial-PID, fsynced, renamed. */
async function toTarFile(file: string, write: (out: NodeJS.WritableStream) => Promise<ExportResult>): Promise<ExportResult> {
  let r: ExportResult | undefined;
  try {
    await writeFileAtomic(file, async (part) => {
      const out = createWriteStream(part, { highWaterMark: 1 << 20 });
      try {
        r = await write(out);
      } catch (e) {
        out.destroy();
        throw e;
      }
    });
    return r!;
  } catch (e) {
    const err = fromFsError(e, file);
    if (err !== e) (err as Error).message = `no space left while writing ${file}; nothing was left behind`;
    throw err;
  }
}

export function registerExport(program: Command): void {
  withStoreOptions(program.command('export'))
    .argument('[names...]', 'model names as you would pull them (gemma2:2b, hf.co/user/repo:Q4_K_M)')
    .description('write models as an ollama models folder (blobs/ + manifests/) or a tar of one, for another machine')
    .requiredOption('-o, --to <target>', 'a folder, a FILE.tar, or - for a tar on stdout')
    .option('--all', 'every stored model tag')
    .option('--since <date>', 'incremental: the other side has everything this registry had at this date (or age: 7d)')
    .option('--exclude-from <file>', "incremental: the other side's `ollama-registry ls --json` output; leave out what it has")
    .action(async (names: string[], opts) => {
      try {
        if (names.length === 0 && !opts.all) throw new CliError('name the models to export, or give --all', EXIT.USAGE);
        const sel: ExportSelection = { names, all: opts.all === true };
        if (opts.since) sel.since = parseSince(opts.since);
        if (opts.excludeFrom) {
          const text = await readFile(opts.excludeFrom, 'utf8');
          try {
            sel.have = parseHave(text);
          } catch (e) {
            throw new CliError(`--exclude-from ${opts.excludeFrom}: ${(e as Error).message}`, EXIT.USAGE);
          }
        }
        const app = await openApp(configFrom(opts), createLogger({ level: 'warn', destination: process.stderr }));
        const plan = await planExport(app, sel);
        const to: string = opts.to;
        const report = (s: string) => (to === '-' ? process.stderr : process.stdout).write(s);
        const started = Date.now();
        const bar = progress('export', plan.bytes, 'bytes');
        const onBytes = (n: number) => bar.update(n);
        let r: ExportResult;
        if (to === '-') r = await exportToTar(app, plan, process.stdout, onBytes);
        else if (to.endsWith('.tar')) r = await toTarFile(path.resolve(to), (out) => exportToTar(app, plan, out, onBytes));
        else {
          const st = await stat(to).catch(() => null);
          if (st && !st.isDirectory()) throw new CliError(`${to} exists and is not a folder (a tar file must end in .tar)`, EXIT.USAGE);
          if (path.resolve(to) === path.resolve(app.config.data)) throw new CliError(`${to} is the data folder itself`, EXIT.USAGE);
          r = await exportToDir(app, plan, path.resolve(to), onBytes);
        }
        bar.stop();
        const secs = (Date.now() - started) / 1000;
        for (const b of r.bad) report(`bad: ${b.digest}: ${b.reason}\n`);
        for (const s of r.skipped) report(`left out: ${s.name}: ${s.reason}\n`);
        for (const t of r.tags) report(`exported ${t}\n`);
        report(`${r.tags.length} tag(s), ${r.blobs.written} blob(s) (${formatBytes(r.blobs.bytes)}) written to ${to === '-' ? 'stdout' : to} in ${secs.toFixed(1)} s` +
          (r.blobs.present ? `; ${r.blobs.present} blob(s) already there` : '') +
          (plan.upToDate.length ? `; ${plan.upToDate.length} tag(s) the other side already has` : '') + '\n');
        process.exitCode = r.bad.length || r.skipped.length ? EXIT.FAILED : EXIT.OK;
      } catch (e) {
        fail(e);
      }
    });
}
