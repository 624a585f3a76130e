// users.json and keys.json are records in the store edited with conditional writes: two editors
// at once (two `keys add` commands, or two replicas) never lose each other's change.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthStore } from '../src/auth/store.js';
import type { Driver } from '../src/storage/driver.js';
import { FsDriver } from '../src/storage/fs.js';
import { MemoryDriver } from '../src/storage/memory.js';
import { makeOllamaKey } from './support/ollama-client.js';
import { parseKeyLine } from '../src/auth/sshkey.js';
import { tempDir } from './support/server.js';

for (const [name, make] of [['fs', async () => new FsDriver(await tempDir())], ['memory', async () => new MemoryDriver()]] as Array<[string, () => Promise<Driver>]>) {
  test(`${name}: concurrent edits through two stores on one driver keep every change`, async () => {
    const d = await make();
    const [one, two] = [new AuthStore(d), new AuthStore(d)];
    await Promise.all([one.refresh(true), two.refresh(true)]);
    const keys = Array.from({ length: 12 }, () => parseKeyLine(makeOllamaKey().publicKeyLine));
    await Promise.all(keys.map((k, i) => (i % 2 ? one : two).putKey({ key: `ssh-ed25519 ${k.blob}`, fingerprint: k.fingerprint, grants: [{ namespace: 'team', actions: ['pull'] }] })));
    await Promise.all([one.putUser({ name: 'a', password: 'x', grants: [] }), two.putUser({ name: 'b', password: 'y', grants: [] })]);
    const reader = new AuthStore(d);
    await reader.refresh(true);
    assert.deepEqual(reader.keys().map((k) => k.fingerprint).sort(), keys.map((k) => k.fingerprint).sort());
    assert.deepEqual(reader.users().map((u) => u.name).sort(), ['a', 'b']);
    assert.ok(await one.removeUser('a'));
    await two.refresh(true);
    assert.deepEqual(two.users().map((u) => u.name), ['b']);
  });
}
