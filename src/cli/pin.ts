// `ollama-registry pin|unpin NAME...`: keep cached tags from eviction under the size cap.
import type { Command } from 'commander';
import { openApp } from '../app.js';
import { createLogger } from '../log.js';
import { getByName } from '../registry/manifests/lookup.js';
import { refName } from '../registry/manifests/manifest-index.js';
import { Pins } from '../registry/housekeeping/pins.js';
import { formatName, parseModelName } from '../names.js';
import { configFrom, fail, withStoreOptions } from './common.js';

export function registerPin(program: Command): void {
  for (const pinned of [true, false]) {
    withStoreOptions(program.command(pinned ? 'pin' : 'unpin'))
      .argument('<names...>', 'model names as you would pull them')
      .description(pinned ? 'never evict these model tags under the size cap' : 'let these model tags be evicted again')
      .action(async (names: string[], opts) => {
        try {
          const app = await openApp(configFrom(opts), createLogger({ level: 'warn', destination: process.stderr }));
          const pins = new Pins(app.driver);
          for (const n of names) {
            // Unpinning a name that is gone is allowed: its pin may outlive it.
            const name = await getByName(app.manifests, n).then(refName, (e) => {
              if (pinned) throw e;
              return formatName(parseModelName(n));
            });
            const changed = await pins.set(name, pinned);
            process.stdout.write(`${changed ? (pinned ? 'pinned' : 'unpinned') : pinned ? 'already pinned' : 'was not pinned'} ${name}\n`);
          }
        } catch (e) {
          fail(e);
        }
      });
  }
}
