// What every command and request handler shares: the configuration and the stores of one data folder.
import { mkdir } from 'node:fs/promises';
import { Auth } from './auth/policy.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { BlobStore } from './registry/blobs.js';
import { PullThrough } from './registry/cache.js';
import { ManifestStore } from './registry/manifests.js';
import { Policy } from './registry/policy.js';
import { UsageTracker } from './registry/usage.js';
import { Uploads } from './registry/uploads.js';
import { FsDriver } from './storage/fs.js';
import { BLOBS, MANIFESTS, STATE } from './storage/layout.js';

export interface App {
  config: Config;
  log: Logger;
  driver: FsDriver;
  blobs: BlobStore;
  manifests: ManifestStore;
  metrics: Metrics;
  /** Allow/deny rules; features call app.policy.check(action, namespace, model). */
  policy: Policy;
  /** Last pull of each tag (memory; flushed by `serve`). */
  usage: UsageTracker;
  uploads: Uploads;
  auth: Auth;
  /** Pull-through from upstream registries; absent when none is configured. */
  cache?: PullThrough;
}

/** Open (creating on first use) the data folder named by the config. */
export async function openApp(config: Config, log: Logger): Promise<App> {
  const driver = new FsDriver(config.data);
  for (const dir of [BLOBS, MANIFESTS, STATE]) await mkdir(driver.path(dir), { recursive: true });
  const removed = await driver.cleanStaging();
  if (removed > 0) log.info({ removed }, 'removed staging files left by a stopped process');
  const blobs = new BlobStore(driver);
  const metrics = createMetrics(driver, blobs);
  const manifests = new ManifestStore(driver, [config.pushHost, ...config.hosts.filter((h) => h !== config.pushHost)]);
  const policy = new Policy(config.policy, { file: config.configFile, log, onRefuse: (action) => metrics.policyRefusals.inc({ action }) });
  const cache = config.upstreams.length > 0 || config.offline ? new PullThrough(config, { driver, blobs, manifests, log, metrics, policy }) : undefined;
  const app: App = {
    config,
    log,
    driver,
    blobs,
    // Pushed models first: see the rule in registry/manifests.ts.
    manifests,
    metrics,
    policy,
    usage: new UsageTracker(driver),
    uploads: new Uploads(driver, blobs, log),
    auth: Auth.open(driver, config, () => app.log, () => metrics.passwordHashes.inc()),
    cache,
  };
  return app;
}
