// The one place a Driver is chosen: S3 when `storage.s3` is configured, else the data folder.
// The S3 driver (and the AWS SDK) is loaded only when used, so commands on a folder start fast.
import type { Config } from '../config.js';
import type { Driver } from './driver.js';
import { FsDriver, makeDirs } from './fs.js';
import { BLOBS, MANIFESTS, STATE } from './layout.js';

export async function openDriver(config: Pick<Config, 'data' | 'storage'>): Promise<Driver> {
  if (config.storage.s3) {
    const { S3Driver } = await import('./s3.js');
    return new S3Driver(config.storage.s3);
  }
  return new FsDriver(config.data);
}

/** Make what a store needs before first use: on a folder, ollama's layout (blobs/, manifests/) and ours. */
export async function prepareDriver(driver: Driver): Promise<void> {
  if (driver instanceof FsDriver) for (const dir of [BLOBS, MANIFESTS, STATE]) makeDirs(driver.path(dir));
}
