// What every command and request handler shares: the configuration and the stores of one data folder.
import path from 'node:path';
import { Auth } from './auth/policy.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { BlobAccess } from './registry/blobs/blob-access.js';
import { BlobStore } from './registry/blobs/blobs.js';
import { PullThrough } from './registry/pull-through/cache.js';
import { DiskSpace } from './registry/housekeeping/disk-space.js';
import { discardOrphanFills } from './registry/pull-through/fills.js';
import { ManifestStore } from './registry/manifests/manifests.js';
import { Policy } from './auth/rules.js';
import { UsageTracker } from './registry/housekeeping/usage.js';
import { UploadQuota } from './registry/uploads/upload-quota.js';
import { Uploads } from './registry/uploads/uploads.js';
import { FsDriver, makeDirs } from './storage/fs.js';
import { BLOBS, MANIFESTS, STATE } from './storage/layout.js';

export interface App {
  config: Config;
  log: Logger;
  driver: FsDriver;
  /** Local folder for work that needs random access (storage.scratch); never shared between machines. */
  scratch: string;
  blobs: BlobStore;
  /** Which repositories each blob can be read through (manifest references and grants). */
  access: BlobAccess;
  manifests: ManifestStore;
  metrics: Metrics;
  /** Allow/deny rules; features call app.policy.check(action, namespace, model). */
  policy: Policy;
  /** Last pull of each tag (memory; flushed by `serve`). */
  usage: UsageTracker;
  uploads: Uploads;
  /** The free-space floor (storage.minFree) that writes and /readyz consult. */
  space: DiskSpace;
  auth: Auth;
  /** Pull-through from upstream registries; absent when none is configured. */
  cache?: PullThrough;
}

/** Open (creating on first use) the data folder named by the config. */
export async function openApp(config: Config, log: Logger): Promise<App> {
  const driver = new FsDriver(config.data);
  for (const dir of [BLOBS, MANIFESTS, STATE]) makeDirs(driver.path(dir));
  const scratch = config.storage.scratch ?? path.join(config.data, STATE, 'scratch');
  makeDirs(scratch);
  const removed = await driver.cleanStaging();
  if (removed > 0) log.info({ removed }, 'removed staging files left by a stopped process');
  await discardOrphanFills(driver, scratch, log);
  const space = new DiskSpace(driver, config.storage.minFree);
  const blobs = new BlobStore(driver, space);
  const metrics = createMetrics(driver, blobs);
  const manifests = new ManifestStore(driver, [config.pushHost, ...config.hosts.filter((h) => h !== config.pushHost)]);
  const access = new BlobAccess(driver, {
    grantTtlMs: config.uploadMaxAgeHours * 3600_000,
    keysOf: (r) => manifests.keysOf(r.namespace, r.model),
    saved: async () => (await app.uploads.committed()).flatMap((u) => (/^(key|user):/.test(u.by ?? '') ? [{ subject: u.by!, repo: u, digest: u.committed, sinceMs: u.atMs }] : [])),
    onError: (e) => app.log.warn({ err: e.message }, 'blob access: could not read the manifests or the upload markers'),
  });
  manifests.onChange = (key) => access.changed(key);
  const policy = new Policy(config.policy, { file: config.configFile, log, onRefuse: (action) => metrics.policyRefusals.inc({ action }) });
  const cache = config.upstreams.length > 0 || config.offline ? new PullThrough(config, { driver, blobs, manifests, log, metrics, policy, space, scratch }) : undefined;
  const app: App = {
    config,
    log,
    driver,
    scratch,
    blobs,
    access,
    // Pushed models first: see the rule in registry/manifests/manifests.ts.
    manifests,
    metrics,
    policy,
    usage: new UsageTracker(driver),
    uploads: new Uploads(driver, blobs, log, { space, quota: new UploadQuota(config, async () => (await blobs.usage()).bytes) }),
    space,
    auth: Auth.open(driver, config, () => app.log, () => metrics.passwordHashes.inc()),
    cache,
  };
  return app;
}
