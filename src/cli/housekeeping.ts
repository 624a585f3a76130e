// What `serve` runs besides requests: last-pull times flushed every minute, and gc (with the
// size cap) every `storage.gcInterval` when configured.
import type { App } from '../app.js';
import { GcRunning, scheduleGc } from '../registry/housekeeping/gc.js';
import { formatBytes } from './format.js';

export function startHousekeeping(app: App): { stop(): Promise<void> } {
  const { log, config } = app;
  app.usage.start(60_000, (e) => log.warn({ err: (e as Error).message }, 'cannot save last-pull times'));
  const s = config.storage;
  const stopGc = s.gcIntervalSeconds > 0
    ? scheduleGc(app, s.gcIntervalSeconds * 1000, { graceMs: s.gcGraceSeconds * 1000, maxSize: s.maxSize, usage: app.usage }, (r) => {
      log.info({
        removedBlobs: r.removed.length, freed: formatBytes(r.bytesFreed), evicted: r.evicted.map((e) => e.name),
        staging: r.staging.removed.length, used: formatBytes(r.usedBytes), overCap: r.overCap || undefined, listCalls: r.listCalls,
      }, 'gc done');
      for (const w of r.warnings) log.warn(w);
    }, (e) => (e instanceof GcRunning ? log.info({ holder: e.holder.owner }, 'gc skipped: another process is running it') : log.error({ err: e }, 'gc failed')))
    : async () => {};
  if (s.gcIntervalSeconds > 0) log.info({ everySeconds: s.gcIntervalSeconds, maxSize: s.maxSize || undefined }, 'gc scheduled');
  return {
    stop: async () => {
      await stopGc();
      await app.usage.stop().catch((e) => log.warn({ err: (e as Error).message }, 'cannot save last-pull times'));
    },
  };
}
