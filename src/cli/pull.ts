// `ollama-registry pull NAME...`: fill the data folder from upstreams ahead of time, verified,
// resumable (an interrupted pull continues where it stopped), with progress bars on a terminal.
// cli-progress draws the multi-line bars (per blob and total, rate, ETA); off a terminal we print
// plain lines instead.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { parseModelName } from '../names.js';
import { ollamaDefaults } from '../upstream/config.js';
import { prefetch, type PullEvent } from '../registry/pull-through/prefetch.js';
import { CliError, configFrom, EXIT, fail, withStoreOptions } from './common.js';
import { formatBytes } from './format.js';

interface Progress {
  event(name: string, e: PullEvent): void;
  done(name: string, ok: boolean, line: string): void;
  stop(): void;
}

function ttyProgress(): Progress {
  // On stdout (the stream whose terminal we checked); a bar line fits 80 columns. linewrap: bars
  // are cut to the width, but the result lines above them wrap and are shown whole (without it
  // the terminal cuts them).
  const bars = new cliProgress.MultiBar({
    format: '{label} |{bar}| {percentage}% {done}/{size} {rate} ETA {eta_formatted}',
    hideCursor: true, clearOnComplete: false, stopOnComplete: false, etaBuffer: 50, fps: 8, barsize: 18,
    stream: process.stdout, linewrap: true,
  }, cliProgress.Presets.shades_classic);
  const total = bars.create(0, 0, { label: 'total'.padEnd(22), done: '0 B', size: '0 B', rate: '' });
  const blobs = new Map<string, { bar: cliProgress.SingleBar; total: number; completed: number; since: number; from: number }>();
  const started = Date.now();
  const refreshTotal = () => {
    let t = 0;
    let c = 0;
    for (const b of blobs.values()) {
      t += b.total;
      c += b.completed;
    }
    const secs = (Date.now() - started) / 1000;
    total.setTotal(t);
    total.update(c, { done: formatBytes(c), size: formatBytes(t), rate: secs > 0 ? `${formatBytes(c / secs)}/s` : '' });
  };
  return {
    event(name, e) {
      if ('error' in e || !e.digest || e.total === undefined) return;
      let b = blobs.get(e.digest);
      if (!b) {
        const label = `${name.slice(0, 9)} ${e.digest.slice(7, 19)}`.padEnd(22);
        b = { bar: bars.create(e.total, 0, { label, done: '0 B', size: formatBytes(e.total), rate: '' }), total: e.total, completed: 0, since: Date.now(), from: e.completed ?? 0 };
        blobs.set(e.digest, b);
      }
      b.completed = e.completed ?? 0;
      const secs = (Date.now() - b.since) / 1000;
      b.bar.update(b.completed, { done: formatBytes(b.completed), rate: secs > 0.5 && b.completed < b.total ? `${formatBytes((b.completed - b.from) / secs)}/s` : '' });
      refreshTotal();
    },
    done(_name, _ok, line) {
      bars.log(line + '\n');
    },
    stop() {
      refreshTotal();
      // Lines logged since the last redraw are only written by a redraw: stop() alone drops them.
      bars.update();
      bars.stop();
    },
  };
}

function plainProgress(): Progress {
  const last = new Map<string, { at: number; completed: number }>();
  return {
    event(name, e) {
      if ('error' in e) return;
      if (!e.digest) {
        if (e.status !== 'verifying sha256 digest' && e.status !== 'writing manifest') process.stdout.write(`${name}: ${e.status}\n`);
        return;
      }
      const now = Date.now();
      const prev = last.get(e.digest);
      const finished = e.completed === e.total;
      if (prev && !finished && now - prev.at < 5000) return;
      if (prev && finished && prev.completed === e.total) return;
      const rate = prev ? ((e.completed ?? 0) - prev.completed) / Math.max(0.001, (now - prev.at) / 1000) : 0;
      last.set(e.digest, { at: now, completed: e.completed ?? 0 });
      const pct = e.total ? Math.floor(((e.completed ?? 0) * 100) / e.total) : 100;
      process.stdout.write(`${name}: ${e.digest.slice(0, 19)} ${pct}% ${formatBytes(e.completed ?? 0)}/${formatBytes(e.total ?? 0)}${rate > 0 && !finished ? ` ${formatBytes(rate)}/s` : ''}\n`);
    },
    done(_name, _ok, line) {
      process.stdout.write(line + '\n');
    },
    stop() {},
  };
}

export function registerPull(program: Command): void {
  withStoreOptions(program.command('pull'))
    .argument('<names...>', 'models as ollama users type them: gemma2:2b, library/llama3.2, hf.co/user/repo:Q4_K_M')
    .description('fetch models from the upstream registries into the data folder ahead of time (resumable, verified)')
    .option('--upstream <url>', 'pull from this registry for every namespace (env OLLAMA_REGISTRY_UPSTREAM; default: registry.ollama.ai, or the host typed in the name, as ollama does)')
    .option('--offline', 'refuse to contact any registry (env OLLAMA_REGISTRY_OFFLINE)')
    .option('--insecure', 'with no upstream configured: fetch names with a host (10.0.0.5:8080/ns/model) over plain HTTP, as ollama pull --insecure')
    .option('-j, --jobs <n>', 'models pulled at once', '2')
    .action(async (names: string[], opts) => {
      try {
        const config = configFrom(opts, { upstream: opts.upstream, offline: opts.offline });
        const parsed = names.map((n) => parseModelName(n)); // bad names are a usage error before anything starts
        if (config.upstreams.length === 0 && !config.offline) {
          Object.assign(config, ollamaDefaults(parsed.map((n) => n.host), opts.insecure === true, config.upstreamAllowPrivateHosts));
          process.stderr.write(`no upstream is configured: pulling from ${config.upstreams.map((u) => u.host).join(', ')} as ollama does (--upstream URL picks another, --offline refuses)\n`);
        }
        const jobs = Number(opts.jobs);
        if (!Number.isInteger(jobs) || jobs < 1) throw new CliError(`--jobs: expected a whole number ≥ 1, got ${opts.jobs}`, EXIT.USAGE);
        const app = await openApp(config, createLogger({ level: 'warn', destination: process.stderr }));
        if (!app.cache || app.cache.offline) {
          throw new CliError(app.cache
            ? 'offline mode is set (--offline, offline: true or OLLAMA_REGISTRY_OFFLINE): nothing can be pulled'
            : 'no upstream is configured: give --upstream URL or set upstreams in the config file', EXIT.USAGE);
        }
        const progress = process.stdout.isTTY ? ttyProgress() : plainProgress();
        const queue = [...names];
        let failed = 0;
        const worker = async () => {
          for (let name = queue.shift(); name; name = queue.shift()) {
            const t0 = Date.now();
            try {
              const r = await prefetch(app, name, (e) => progress.event(name!, e));
              const secs = (Date.now() - t0) / 1000;
              const stale = r.stale ? ' (manifest from cache: no upstream answered)' : '';
              progress.done(name, true, `pulled ${name}: ${r.blobs} blob(s), ${r.present} already here, ${formatBytes(r.fetched)} from upstream in ${secs.toFixed(1)} s${stale}`);
            } catch (e) {
              failed++;
              progress.done(name, false, `failed ${name}: ${(e as Error).message}`);
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(jobs, names.length) }, worker));
        progress.stop();
        await app.cache.close();
        process.exitCode = failed ? EXIT.FAILED : EXIT.OK;
      } catch (e) {
        fail(e);
      }
    });
}
