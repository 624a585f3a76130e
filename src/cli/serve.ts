import type { Command } from 'commander';
import v8 from 'node:v8';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { startServer } from '../http/server.js';
import { storageCheck } from '../http/service.js';
import { configFrom, fail, withStoreOptions } from './common.js';
import { startHousekeeping } from './housekeeping.js';

export function registerServe(program: Command): void {
  withStoreOptions(program.command('serve'))
    .description('serve the data folder to ollama clients (and OCI tools)')
    .option('-l, --listen <host:port>', 'address to listen on (env OLLAMA_REGISTRY_LISTEN; default 0.0.0.0:8080)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key for --tls-cert (PEM)')
    .option('--upstream <url>', 'pull through from this registry for every namespace, e.g. https://registry.ollama.ai (env OLLAMA_REGISTRY_UPSTREAM)')
    .option('--upstream-key <file>', "the registry's ed25519 key for upstreams that want ollama's key sign-in (env OLLAMA_REGISTRY_UPSTREAM_KEY; default: made in the data folder)")
    .option('--mirror [dir]', 'be a transparent mirror of registry.ollama.ai with the certificate from `ca init` (env OLLAMA_REGISTRY_MIRROR_DIR)')
    .option('--mirror-listen <host:port>', 'also take TLS for the mirrored hosts here (DNS mode), e.g. 0.0.0.0:443')
    .option('--offline', 'never contact upstreams: serve what is cached (env OLLAMA_REGISTRY_OFFLINE)')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .option('--log-format <format>', 'json|text|auto (auto: text on a terminal)')
    .option('--max-size <size>', 'size cap for blobs, e.g. 500GB: gc evicts least-recently-pulled cached models (config storage.maxSize)')
    .action(async (opts) => {
      // V8 lets the old generation grow up to 4x between full collections, mostly with garbage of
      // finished requests: 1.3x keeps serve's peak RSS ~10 MiB lower under load at the same CPU
      // per request (npm run bench -- core). A flag V8 reads at each collection, so settable here.
      v8.setFlagsFromString('--heap-growing-percent=30');
      try {
        const config = configFrom(opts, {
          listen: opts.listen, 'tls.cert': opts.tlsCert, 'tls.key': opts.tlsKey,
          'log.level': opts.logLevel, 'log.format': opts.logFormat, 'storage.maxSize': opts.maxSize,
          upstream: opts.upstream, upstreamKey: opts.upstreamKey, offline: opts.offline,
          'mirror.enabled': opts.mirror ? true : undefined, 'mirror.dir': typeof opts.mirror === 'string' ? opts.mirror : undefined,
          'mirror.listen': opts.mirrorListen,
        });
        const log = createLogger(config.log);
        const app = await openApp(config, log);
        // A read-only folder can still be served, but every write would fail later: say so now.
        const storage = await storageCheck(app);
        if (storage !== 'ok') log.warn({ data: config.data, storage }, `the data folder is ${storage}: serving what it holds, but pushes, pull-through, gc and last-pull records will fail`);
        const srv = await startServer(app, { ...config.listen, tls: config.tls });
        if (srv.mirror) {
          log.info({ hosts: config.mirror!.hosts, dnsMode: srv.mirror.url, tunnel: config.mirror!.tunnel },
            'transparent mirror: CONNECT on the main port' + (srv.mirror.url ? ' and TLS on its own' : ''));
        }
        log.info({
          url: srv.url, data: config.data, upstreams: config.upstreams.map((u) => u.url), offline: config.offline || undefined, startupMs: Math.round(process.uptime() * 1000),
        }, 'ollama-registry is serving');
        const housekeeping = startHousekeeping(app);
        if (app.cache) {
          const n = await app.cache.resumeFills();
          if (n) log.info({ fills: n }, 'resuming fills left by the previous run');
        }
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) {
            log.warn('second signal: exiting now');
            process.exit(1);
          }
          stopping = true;
          log.info({ signal, graceSeconds: config.shutdownTimeoutSeconds }, 'shutting down: finishing in-flight requests');
          void srv.close().then(() => housekeeping.stop()).then(() => app.cache?.close()).then(() => {
            log.info('stopped');
            log.flush();
            process.exit(0);
          });
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
      } catch (e) {
        fail(e);
      }
    });
}
