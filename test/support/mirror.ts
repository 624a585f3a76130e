// A client that behaves as Go's net/http does through HTTPS_PROXY (ollama's registry client):
// CONNECT host:443, wait for 200, then TLS with SNI and ALPN h2+http/1.1, then HTTP/1.1.
import http from 'node:http';
import tls from 'node:tls';

export const MIRRORED = 'registry.ollama.ai';

export interface GoAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** CONNECT through the proxy on `proxyPort`, then TLS trusting `ca`; rejects with the reason phrase on a refusal. */
export function goTunnel(proxyPort: number, ca: Buffer, target = `${MIRRORED}:443`, servername = target.replace(/:\d+$/, '')): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: target, headers: { Host: target, 'User-Agent': 'Go-http-client/1.1' } });
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        return reject(Object.assign(new Error(res.statusMessage ?? ''), { status: res.statusCode }));
      }
      const t = tls.connect({ socket, servername, ALPNProtocols: ['h2', 'http/1.1'], ca });
      t.once('secureConnect', () => resolve(t));
      t.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}

/** One request inside a fresh tunnel; `body` is sent as given (a Buffer gets a Content-Length). */
export interface GoRequest {
  headers?: Record<string, string>;
  body?: Buffer;
  /** The Host header (default registry.ollama.ai). */
  host?: string;
  /** The CONNECT target (default host:443). */
  tunnel?: string;
}

export async function goRequest(proxyPort: number, ca: Buffer, method: string, p: string, o: GoRequest = {}): Promise<GoAnswer> {
  const host = o.host ?? MIRRORED;
  const socket = await goTunnel(proxyPort, ca, o.tunnel ?? `${host}:443`);
  if (socket.alpnProtocol !== 'http/1.1') throw new Error(`ALPN picked ${socket.alpnProtocol}, not http/1.1`);
  return new Promise((resolve, reject) => {
    const req = http.request({ createConnection: () => socket, method, host, path: p, headers: { Host: host, ...o.headers } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        socket.destroy();
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) });
      });
      res.on('error', reject);
    });
    req.once('error', reject);
    req.end(o.body);
  });
}

/** The status and reason phrase of a CONNECT to `target`. */
export function connectStatus(proxyPort: number, target: string): Promise<{ status: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: target, headers: { Host: target } });
    req.once('connect', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode!, reason: res.statusMessage ?? '' });
    });
    req.once('response', (res) => resolve({ status: res.statusCode!, reason: res.statusMessage ?? '' }));
    req.once('error', reject);
    req.end();
  });
}
