// Raw TCP clients for abuse tests: requests that stop half-way, bodies that never end, and
// connections from other loopback addresses (127.0.0.2, …) to test per-address limits.
import net from 'node:net';

export interface RawConn {
  socket: net.Socket;
  /** Everything the server sent, once it closed the connection (or we did). */
  closed: Promise<string>;
  /** Resolves with what arrived once the first response's head is in (or the connection closed). */
  head(): Promise<string>;
  /** Status code of the first response, once its head is in; 0 when closed without one. */
  status(): Promise<number>;
  close(): void;
}

export function rawConnect(url: string, opts: { localAddress?: string; send?: string } = {}): Promise<RawConn> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port), localAddress: opts.localAddress });
    let got = '';
    const waiters: Array<() => void> = [];
    const wake = () => waiters.splice(0).forEach((w) => w());
    socket.on('data', (d: Buffer) => { got += d.toString('latin1'); wake(); });
    const closed = new Promise<string>((res) => socket.once('close', () => { wake(); res(got); }));
    socket.on('error', () => {}); // a reset is one of the answers we look for
    socket.once('connect', () => {
      if (opts.send) socket.write(opts.send);
      const head = () => new Promise<string>((res) => {
        const check = () => (got.includes('\r\n\r\n') || socket.destroyed ? res(got) : waiters.push(check));
        check();
      });
      resolve({
        socket,
        closed,
        head,
        status: async () => Number(/^HTTP\/1\.1 (\d{3})/.exec(await head())?.[1] ?? 0),
        close: () => socket.destroy(),
      });
    });
    socket.once('error', reject);
  });
}

/** The JSON error body of a raw response. */
export function rawJson(text: string): any {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
}

/** Request head for a raw request (HTTP/1.1, keep-alive), ending the header block. */
export function head(method: string, path: string, headers: Record<string, string | number> = {}): string {
  return `${method} ${path} HTTP/1.1\r\nHost: registry.test\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}
