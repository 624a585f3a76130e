// Run the built CLI as a child process, as a user would.
import { spawn } from 'node:child_process';
import { MAIN } from './server.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `ollama-registry ARGS…`; `stdin` is piped in (a Buffer, or a stream such as another command's
 * stdout). `timeoutMs`: kill a command that hangs (its code is then -1 and stderr says so).
 */
export function cli(args: string[], opts: { stdin?: Buffer | NodeJS.ReadableStream; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.on('error', reject);
    const timer = opts.timeoutMs ? setTimeout(() => {
      stderr += `\n(killed: still running after ${opts.timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, opts.timeoutMs) : undefined;
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    if (opts.stdin === undefined) child.stdin.end();
    else if (Buffer.isBuffer(opts.stdin)) child.stdin.end(opts.stdin);
    else opts.stdin.pipe(child.stdin);
  });
}
