// A self-signed certificate for localhost, 127.0.0.1 and 127.0.0.2 (a second host), made with Debian's openssl.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Writes cert.pem and key.pem (P-256, one day) into `dir`; returns their paths. */
export async function makeLocalCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2', '-keyout', key, '-out', cert]);
  return { cert, key };
}
