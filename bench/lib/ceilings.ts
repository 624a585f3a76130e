// What bounds a push on this machine besides the disk: one core's sha256 rate, as OpenSSL measures it.
import { run } from './procs.js';

/** One core's sha256 rate in GB/s (`openssl speed -evp sha256` on 1 MiB buffers, `seconds` long). */
export async function sha256Rate(seconds = 2): Promise<number> {
  const out = await run('openssl', ['speed', '-evp', 'sha256', '-bytes', String(1 << 20), '-seconds', String(seconds)]);
  // The last line reads "sha256   1443664.46k": thousands of bytes per second.
  const m = /^sha256\s+([\d.]+)k\s*$/m.exec(out);
  if (!m) throw new Error(`cannot read openssl speed output: ${out.slice(-300)}`);
  return (Number(m[1]) * 1000) / 1e9;
}
