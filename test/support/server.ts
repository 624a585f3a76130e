// Start a real registry on a loopback port for a test: in-process (startTestRegistry) or as
// a child process running the built CLI (spawnRegistry), e.g. to kill -9 it.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openApp, type App } from '../../src/app.js';
import type { Driver } from '../../src/storage/driver.js';
import { defaults, type Config } from '../../src/config.js';
import type { Limits } from '../../src/limits.js';
import { createLogger } from '../../src/log.js';
import type { RouteDef } from '../../src/http/route-def.js';
import { startServer } from '../../src/http/server.js';

export const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

const made: string[] = [];
// Each test file runs in its own process: its temporary folders go when it exits.
process.once('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export async function tempDir(prefix = 'oreg-'): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Test config with some `limits:` changed (small timeouts, low caps). */
export function withLimits(over: Partial<Limits>): Partial<Config> {
  return { limits: { ...defaults().limits, ...over } } as Partial<Config>;
}

export interface TestRegistry {
  url: string;
  /** host:port, as ollama names the registry. */
  hostPort: string;
  app: App;
  data: string;
  close(): Promise<void>;
}

/** The registry's App on a test data folder (default: a new one), without a server. `driver`: a store made by the test (e.g. the in-memory driver) instead of the configured one. */
export async function openTestApp(opts: { data?: string; config?: Partial<Config>; driver?: Driver } = {}): Promise<App> {
  const data = opts.data ?? (await tempDir());
  const config: Config = { ...defaults(), data, listen: { host: '127.0.0.1', port: 0 }, shutdownTimeoutSeconds: 2, ...opts.config };
  const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', format: 'text', destination: process.stderr });
  return openApp(config, log, { driver: opts.driver });
}

export async function startTestRegistry(opts: { data?: string; config?: Partial<Config>; routes?: RouteDef[]; driver?: Driver } = {}): Promise<TestRegistry> {
  const app = await openTestApp(opts);
  const { config } = app;
  const data = config.data;
  const srv = await startServer(app, { ...config.listen, tls: config.tls, routes: opts.routes });
  return { url: srv.url, hostPort: new URL(srv.url).host, app, data, close: srv.close };
}

export interface SpawnedRegistry {
  url: string;
  hostPort: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM (or the given signal) and wait for exit; resolves the exit code/signal. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Run `ollama-registry serve` as a child process on an ephemeral loopback port. `command`: how
 * to run ollama-registry (default: the built CLI with this node; e.g. an installed bin instead).
 */
export async function spawnRegistry(args: string[], env: NodeJS.ProcessEnv = {}, command: string[] = [process.execPath, MAIN]): Promise<SpawnedRegistry> {
  const [bin, ...pre] = command;
  const child = spawn(bin!, [...pre, 'serve', '--listen', '127.0.0.1:0', '--log-format', 'json', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /"url":"(http[^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
    void exited.then(({ code, signal }) => reject(new Error(`registry exited (${code ?? signal}) before listening:\n${out}`)));
    setTimeout(() => reject(new Error(`registry did not start in 15 s:\n${out}`)), 15_000).unref();
  });
  return {
    url,
    hostPort: new URL(url).host,
    child,
    output: () => out,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
