// What bounds a push on this machine besides the disk: one core's sha256 rate, as OpenSSL measures it.
import os from 'node:os';
import path from 'node:path';
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
 * CPU seconds per GiB to write a new file through the page cache (in a child: 256 MiB of 1 MiB writes, no
 * fsync; the file is removed). About 0.3 where the page cache grows cheaply; measured 3.4-4.0 on the 2-core
 * VM of issue 18, which returns freed memory to its host (free page reporting), so every page the page cache
 * grows into costs a host fault. Fills and buffered writes pay it per byte, so the benches print it.
 */
export async function pageCacheWriteCost(dir = os.tmpdir(), mib = 256): Promise<number> {
  const file = path.join(dir, `oreg-bench-pagecache-${process.pid}`);
  const code = `const fs=require('fs');const b=Buffer.alloc(1048576,1);const fd=fs.openSync(${JSON.stringify(file)},'w');const u=process.cpuUsage();` +
    `for(let i=0;i<${mib};i++)fs.writeSync(fd,b);const c=process.cpuUsage(u);fs.closeSync(fd);fs.unlinkSync(${JSON.stringify(file)});process.stdout.write(String((c.user+c.system)/1e6))`;
  const out = await run(process.execPath, ['-e', code]);
  return (Number(out) * 1024) / mib;
}
