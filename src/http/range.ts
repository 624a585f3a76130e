import { RegistryError } from '../errors.js';
import type { ByteRange } from '../storage/driver.js';

/**
 * One byte range of a `Range` header against a size, or undefined when there is no header.
 * Multiple ranges, malformed and unsatisfiable ranges get 416 with a message.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const unsatisfiable = (why: string) =>
    new RegistryError('RANGE_INVALID', `${why}; the blob has ${size} bytes`, { headers: { 'Content-Range': `bytes */${size}` } });
  if (header.includes(',')) throw unsatisfiable('multiple byte ranges are not supported, ask for one range per request');
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) throw unsatisfiable(`malformed Range header ${JSON.stringify(header.slice(0, 60))}, expected bytes=START-END`);
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) throw unsatisfiable('empty suffix range');
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (end < start) throw unsatisfiable(`range end ${end} is before its start ${start}`);
  if (start >= size) throw unsatisfiable(`range starts at ${start}, past the end`);
  return { start, end: Math.min(end, size - 1) };
}
