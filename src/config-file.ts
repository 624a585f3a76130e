// Reading the YAML config file, for the settings (config.ts) and the policy reload (auth/rules.ts):
// one reader, so both get the same caps against a hostile file.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parseDocument } from 'yaml';

export class ConfigError extends Error {
  constructor(readonly key: string, message: string) {
    super(`config: ${key}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** The config file's size cap: settings fit in a few KiB; anything near this is not a config file. */
const MAX_FILE_BYTES = 1 << 20;

/** The YAML file as a mapping; size-capped, aliases capped by the yaml library (billion laughs), warnings are errors. */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    const fd = openSync(file, 'r');
    try {
      if (!fstatSync(fd).isFile()) throw new Error('not a regular file');
      const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
      let n = 0;
      for (let got = -1; got !== 0 && n < buf.length;) n += got = readSync(fd, buf, n, buf.length - n, null);
      if (n > MAX_FILE_BYTES) throw new ConfigError(file, `too large for a config file (over ${MAX_FILE_BYTES >> 10} KiB)`);
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(file, `cannot read it: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    const parsed = parseDocument(text, { uniqueKeys: true, logLevel: 'silent' });
    const problem = parsed.errors[0] ?? parsed.warnings[0];
    if (problem) throw problem;
    doc = parsed.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // The first line of the yaml library's message; it ends in ':' before a source excerpt.
    throw new ConfigError(file, `not valid YAML: ${(e as Error).message.split('\n')[0]!.replace(/:\s*$/, '')}`);
  }
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError(file, 'must be a YAML mapping of settings');
  return doc ?? {};
}
