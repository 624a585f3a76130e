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

/**
 * Seconds per GiB to touch memory the process never had (in a fresh child: page faults and zeroing).
 * Some VMs hand freed memory back to their host, and then every page the page cache or a heap grows
 * into costs a host fault: measured at ~2.7 s/GiB on the 2-core VM of issue 18 against ~0.15 on bare
 * metal. Buffered file writes and fills pay it per byte written, so the benches print it next to their CPU figures.
 */
export async function freshMemoryCost(mib = 256): Promise<number> {
  const code = `const t=process.hrtime.bigint();const b=Buffer.allocUnsafeSlow(${mib}*1048576);for(let i=0;i<b.length;i+=4096)b[i]=1;` +
    `process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e9))`;
  const out = await run(process.execPath, ['-e', code]);
  return (Number(out) * 1024) / mib;
}
