// Progress of long work on stderr: a bar on a terminal (cli-progress), otherwise a plain line
// every few seconds and one at the end, so logs of cron jobs and CI stay readable.
import cliProgress from 'cli-progress';
import { formatBytes } from './format.js';

export interface Progress {
  /** Set the amount done (bytes or items) and optionally what is being worked on. */
  update(done: number, what?: string): void;
  /** Grow the total (work discovered on the way, e.g. a tar read from stdin). */
  setTotal(total: number): void;
  stop(): void;
}

export function progress(label: string, total: number, unit: 'bytes' | 'items', out: NodeJS.WriteStream = process.stderr): Progress {
  const fmt = (n: number) => (unit === 'bytes' ? formatBytes(n) : String(n));
  if (out.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream: out,
      format: `${label} [{bar}] {percentage}% {done}/{all} {what}`,
      hideCursor: true,
      clearOnComplete: false,
      barsize: 30,
    }, cliProgress.Presets.shades_classic);
    let all = total;
    bar.start(Math.max(all, 1), 0, { done: fmt(0), all: fmt(all), what: '' });
    return {
      update: (done, what = '') => bar.update(done, { done: fmt(done), all: fmt(all), what: what.slice(0, 40) }),
      setTotal: (t) => {
        all = t;
        bar.setTotal(Math.max(t, 1));
      },
      stop: () => bar.stop(),
    };
  }
  let all = total;
  let last = Date.now();
  let current = 0;
  const line = () => out.write(`${label}: ${fmt(current)}${all > 0 ? ` of ${fmt(all)} (${Math.floor((100 * current) / Math.max(all, 1))}%)` : ''}\n`);
  return {
    update: (done) => {
      current = done;
      if (Date.now() - last >= 5000) {
        last = Date.now();
        line();
      }
    },
    setTotal: (t) => { all = t; },
    stop: line,
  };
}
