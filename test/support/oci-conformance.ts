// The OCI distribution-spec conformance suite, v1.1.1, built from its Go module into a cache
// folder outside the repository (once per machine). Its source comes from the Go module proxy
// (the module at the v1.1.1 commit), else from a git clone of the v1.1.1 tag
// (OCI_CONFORMANCE_GIT overrides where from). Where neither can be had (the Go module proxy
// reachable here refuses the v1.1.1 commit, and there is no GitHub), the one older commit that
// proxy serves, f2182352 (2023-11-01, the v1.1.0 release candidates' suite), is built instead.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify, stripVTControlCharacters } from 'node:util';

const run = promisify(execFile);
const MODULE = 'github.com/opencontainers/distribution-spec/conformance';
/** v1.1.1 is the commit a139cc4 (2025-01-23 16:05:58 UTC); the module has no tag of its own. */
const PSEUDO_VERSION = 'v0.0.0-20250123160558-a139cc423184';
const TAG = 'v1.1.1';
/** The fallback: the v1.1.0-rc suite (its last two checks of deletes differ from v1.1.1's). */
const FALLBACK_VERSION = 'v0.0.0-20231101194043-f2182352d4cc';
export const FALLBACK_LABEL = 'f2182352 (2023-11-01, v1.1.0-rc)';

const cacheDir = (label: string) => path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'ollama-registry-test', `oci-conformance-${label}`);

/** `go` on PATH, else the usual tarball install. */
export function goBinary(): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin', '/usr/lib/go/bin']) {
    if (dir && existsSync(path.join(dir, 'go'))) return path.join(dir, 'go');
  }
  return null;
}

async function sourceFromProxy(go: string, version = PSEUDO_VERSION): Promise<string> {
  const { stdout } = await run(go, ['mod', 'download', '-json', `${MODULE}@${version}`], { timeout: 300_000, maxBuffer: 1 << 20 })
    .catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '{}' }));
  const info = JSON.parse(stdout) as { Dir?: string; Error?: string };
  if (!info.Dir) throw new Error(`go module proxy: ${info.Error ?? 'no directory'}`);
  return info.Dir;
}

async function sourceFromGit(work: string): Promise<string> {
  const from = process.env.OCI_CONFORMANCE_GIT ?? 'https://github.com/opencontainers/distribution-spec';
  await run('git', ['clone', '--quiet', '--depth', '1', '--branch', TAG, from, path.join(work, 'spec')], { timeout: 300_000 });
  return path.join(work, 'spec', 'conformance');
}

/** The built suite and which version it is (building it when absent); throws with every reason it could not. */
export async function buildConformance(): Promise<{ bin: string; version: string }> {
  for (const version of [TAG, FALLBACK_LABEL]) {
    const bin = path.join(cacheDir(version === TAG ? TAG : 'f2182352'), 'conformance.test');
    if (existsSync(bin)) return { bin, version };
  }
  const go = goBinary();
  if (!go) throw new Error('go is not installed (apt-get install golang-go)');
  const work = await mkdtemp(path.join(os.tmpdir(), 'oci-conformance-'));
  const reasons: string[] = [];
  try {
    const sources: Array<[string, () => Promise<string>]> = [
      [TAG, () => sourceFromProxy(go)], [TAG, () => sourceFromGit(work)], [FALLBACK_LABEL, () => sourceFromProxy(go, FALLBACK_VERSION)],
    ];
    for (const [version, source] of sources) {
      try {
        const dir = await source();
        const bin = path.join(cacheDir(version === TAG ? TAG : 'f2182352'), 'conformance.test');
        await mkdir(path.dirname(bin), { recursive: true });
        // The module cache is read-only: build from a copy.
        const copy = path.join(work, `src-${reasons.length}`);
        await run('cp', ['-r', dir, copy]);
        await run('chmod', ['-R', 'u+w', copy]);
        const tmp = `${bin}.${process.pid}`;
        await run(go, ['test', '-c', '-o', tmp, '.'], { cwd: copy, timeout: 600_000, env: { ...process.env, GOFLAGS: '-mod=mod' } });
        await rename(tmp, bin);
        return { bin, version };
      } catch (e) {
        reasons.push((e as Error).message.split('\n').slice(0, 3).join(' '));
      }
    }
    throw new Error(`cannot build the OCI conformance suite ${TAG}: ${reasons.join('; ')}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface ConformanceResult {
  passed: number;
  failed: number;
  skipped: number;
  /** Names of the failed specs. */
  failures: string[];
  summary: string;
  output: string;
}

/** Run the suite against a registry, in `cwd` (it writes its reports there). */
export async function runConformance(bin: string, cwd: string, env: Record<string, string>): Promise<ConformanceResult> {
  const r = await run(bin, ['-test.v'], { cwd, env: { ...process.env, ...env }, timeout: 300_000, maxBuffer: 64 << 20 })
    .catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
  const output = stripVTControlCharacters(r.stdout + r.stderr);
  const m = /(\d+) Passed \| (\d+) Failed \| \d+ Pending \| (\d+) Skipped/.exec(output);
  if (!m) throw new Error(`the conformance suite printed no summary:\n${output.slice(-3000)}`);
  const failures = [...output.matchAll(/^\s*\[FAIL\] .*\[It\] (.*)$/gm)].map((x) => x[1]!.trim());
  return { passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3]), failures: [...new Set(failures)], summary: m[0], output };
}
