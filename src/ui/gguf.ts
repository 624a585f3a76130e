// The context length a GGUF model was trained for (`<architecture>.context_length`), read from
// the metadata at the start of the model file. Converters write the architecture keys before the
// large tokenizer arrays, so the first few hundred KiB are enough; we never read further.

const TYPE_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const STRING = 8;
const ARRAY = 9;

class Truncated extends Error {}

export interface GgufInfo {
  architecture: string | null;
  contextLength: number | null;
}

/** Metadata from a GGUF header prefix; null when the bytes are not GGUF v2/v3. */
export function readGgufInfo(buf: Buffer): GgufInfo | null {
  if (buf.length < 24 || buf.toString('latin1', 0, 4) !== 'GGUF') return null;
  const version = buf.readUInt32LE(4);
  if (version !== 2 && version !== 3) return null;
  let off = 24; // magic, version, tensor count (u64), metadata count (u64)
  const count = Number(buf.readBigUInt64LE(16));
  const need = (n: number) => {
    if (off + n > buf.length) throw new Truncated();
  };
  const u32 = () => { need(4); const v = buf.readUInt32LE(off); off += 4; return v; };
  const u64 = () => { need(8); const v = buf.readBigUInt64LE(off); off += 8; return v; };
  const string = () => {
    const len = Number(u64());
    need(len);
    const s = buf.toString('utf8', off, off + len);
    off += len;
    return s;
  };
  const scalar = (type: number): number | string | null => {
    if (type === STRING) return string();
    const size = TYPE_SIZES[type];
    if (size === undefined) throw new Truncated();
    need(size);
    let v: number | null = null;
    if (type === 4) v = buf.readUInt32LE(off);
    else if (type === 5) v = buf.readInt32LE(off);
    else if (type === 10) v = Number(buf.readBigUInt64LE(off));
    else if (type === 11) v = Number(buf.readBigInt64LE(off));
    off += size;
    return v;
  };
  const info: GgufInfo = { architecture: null, contextLength: null };
  const lengths = new Map<string, number>();
  try {
    for (let i = 0; i < count && i < 100_000; i++) {
      const key = string();
      const type = u32();
      if (type === ARRAY) {
        const inner = u32();
        const n = Number(u64());
        if (inner === STRING) for (let j = 0; j < n; j++) string();
        else {
          const size = TYPE_SIZES[inner];
          if (size === undefined) break;
          need(size * n);
          off += size * n;
        }
        continue;
      }
      const v = scalar(type);
      if (key === 'general.architecture' && typeof v === 'string') info.architecture = v;
      else if (key.endsWith('.context_length') && typeof v === 'number') lengths.set(key, v);
      if (info.architecture && lengths.has(`${info.architecture}.context_length`)) break;
    }
  } catch (e) {
    if (!(e instanceof Truncated)) throw e;
  }
  info.contextLength = (info.architecture ? lengths.get(`${info.architecture}.context_length`) : undefined)
    ?? (lengths.size === 1 ? [...lengths.values()][0]! : null);
  return info;
}
