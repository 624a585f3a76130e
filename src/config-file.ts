// Reading the YAML config file, for the settings (config.ts) and the policy reload (auth/rules.ts):
// one reader, so both get the same caps against a hostile file.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';

export class ConfigError extends Error {
  constructor(readonly key: string, message: string) {
    super(`config: ${key}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** The config file's size cap: settings fit in a few KiB; anything near this is not a config file. */
const MAX_FILE_BYTES = 1 << 20;

/** Throws when a mapping has a key twice (the last would win silently) or a key that is not a scalar. */
function repeatedKey(doc: Document, lines: LineCounter): void {
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const { key } of map.items) {
        const where = (node: unknown) => {
          const at = (node as { range?: [number] } | null)?.range?.[0];
          if (at === undefined) return '';
          const pos = lines.linePos(at);
          return ` at line ${pos.line}, column ${pos.col}`;
        };
        if (!isScalar(key)) throw new Error(`Map keys must be plain values${where(key)}`);
        if (seen.has(key.value)) throw new Error(`Map keys must be unique: ${String(key.value).slice(0, 80)}${where(key)}`);
        seen.add(key.value);
      }
    },
  });
}

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
    // The yaml library's own repeated-key check is quadratic (100 s for a 1 MiB file): ours is linear.
    const lines = new LineCounter();
    const parsed = parseDocument(text, { uniqueKeys: false, logLevel: 'silent', lineCounter: lines });
    const problem = parsed.errors[0] ?? parsed.warnings[0];
    if (problem) throw problem;
    repeatedKey(parsed, lines);
    doc = parsed.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // The first line of the yaml library's message; it ends in ':' before a source excerpt.
    throw new ConfigError(file, `not valid YAML: ${(e as Error).message.split('\n')[0]!.replace(/:\s*$/, '')}`);
  }
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError(file, 'must be a YAML mapping of settings');
  return doc ?? {};
}
