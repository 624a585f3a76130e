// What every command and request handler shares: the configuration and the stores of one data folder.
import path from 'node:path';
import { Auth } from './auth/decisions.js';
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
import { committedSessions } from './registry/uploads/session-records.js';
import type { Driver } from './storage/driver.js';
import { makeDirs } from './storage/fs.js';
import { STATE } from './storage/layout.js';
import { localSpace } from './storage/local.js';
import { openDriver, prepareDriver } from './storage/open.js';
import { loadUndici } from './upstream/undici.js';

export interface App {
  config: Config;
  log: Logger;
  /** The store: a folder, or S3 (storage.s3); made by storage/open.ts from the config. */
  driver: Driver;
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

/**
 * Open (creating on first use) the store named by the config. `opts.driver` is for tests only: a
 * store made by the test (e.g. the in-memory driver) instead of the configured one.
 */
export async function openApp(config: Config, log: Logger, opts: { driver?: Driver } = {}): Promise<App> {
  const driver = opts.driver ?? (await openDriver(config));
  await prepareDriver(driver);
  const scratch = config.storage.scratch ?? path.join(config.data, STATE, 'scratch');
  makeDirs(scratch);
  const { removed } = (await driver.sweep?.({ graceMs: 0, staleMs: 24 * 3600_000 })) ?? { removed: [] };
  if (removed.length > 0) log.info({ removed: removed.length }, 'removed staging files left by a stopped process');
  await discardOrphanFills(driver, scratch, log);
  // Where the store cannot tell its free space (S3), the floor guards the scratch folder pushes land in.
  const space = new DiskSpace({ space: async () => (await driver.space?.()) ?? localSpace(scratch) }, config.storage.minFree);
  const blobs = new BlobStore(driver, space);
  const metrics = createMetrics(driver, blobs);
  const manifests = new ManifestStore(driver, [config.pushHost, ...config.hosts.filter((h) => h !== config.pushHost)]);
  const access = new BlobAccess(driver, {
    grantTtlMs: config.uploadMaxAgeHours * 3600_000,
    keysOf: (r) => manifests.keysOf(r.namespace, r.model),
    saved: async () => (await committedSessions(driver)).flatMap((u) => (/^(key|user):/.test(u.by ?? '') ? [{ subject: u.by!, repo: u, digest: u.committed, sinceMs: u.atMs }] : [])),
    onError: (e) => app.log.warn({ err: e.message }, 'blob access: could not read the manifests or the upload markers'),
  });
  manifests.onChange = (key) => access.changed(key);
  const policy = new Policy(config.policy, { file: config.configFile, log, onRefuse: (action) => metrics.policyRefusals.inc({ action }) });
  const pullThrough = config.upstreams.length > 0 || config.offline;
  if (pullThrough) await loadUndici();
  const cache = pullThrough ? new PullThrough(config, { driver, blobs, manifests, log, metrics, policy, space, scratch }) : undefined;
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
    uploads: new Uploads(driver, scratch, blobs, log, { space, quota: new UploadQuota(config, async () => (await blobs.usage()).bytes) }),
    space,
    auth: await Auth.open(driver, config, () => app.log, () => metrics.passwordHashes.inc()),
    cache,
  };
  app.auth.store.watch(); // changes by `keys`/`users` (or another replica) take effect within a second
  return app;
}
