// The OCI distribution-spec conformance suite v1.1.1 (all four categories: pull, push, content
// discovery, content management) against the real server, with a user that may push and delete
// and allowDelete on. One failure is expected and kept on purpose: "Retry previous blob chunk
// should return 416". ollama re-sends a part with the same Content-Range and gives up after 6
// tries on a 416 (protocol/ollama.md §5.4), so the registry answers 202.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConformance, FALLBACK_LABEL, runConformance } from './support/oci-conformance.js';
import { skipOrFail } from './support/ci.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir } from './support/server.js';

const KEPT_FAILURE = 'Retry previous blob chunk should return 416';
/**
 * Only with the older suite (where v1.1.1 cannot be had): its teardown deletes a layer while a
 * manifest still uses it (we refuse: 403), and it wants an empty tag list (200) for a repository
 * whose last tag went, where we answer 404 NAME_UNKNOWN; v1.1.1 checks neither so.
 */
const OLDER_SUITE_ONLY = ['Delete layer blob created in setup', 'GET request to tags list should reflect manifest deletion'];

test('OCI conformance (v1.1.1; the v1.1.0-rc suite where v1.1.1 cannot be built): everything passes but the retry-chunk 416 that ollama needs as 202', { timeout: 900_000 }, async (t) => {
  let bin: string;
  let version: string;
  try {
    ({ bin, version } = await buildConformance());
  } catch (e) {
    skipOrFail(t, (e as Error).message);
    return;
  }
  const reg = await startTestRegistry({ config: { allowDelete: true } });
  try {
    await addUser(reg, 'conformance', 'conformance password', '*', ['pull', 'push', 'delete']);
    const r = await runConformance(bin, await tempDir('oci-conf-'), {
      OCI_ROOT_URL: reg.url, OCI_NAMESPACE: 'conformance/test', OCI_CROSSMOUNT_NAMESPACE: 'conformance/crossmount',
      OCI_USERNAME: 'conformance', OCI_PASSWORD: 'conformance password',
      OCI_TEST_PULL: '1', OCI_TEST_PUSH: '1', OCI_TEST_CONTENT_DISCOVERY: '1', OCI_TEST_CONTENT_MANAGEMENT: '1',
      OCI_HIDE_SKIPPED_WORKFLOWS: '0',
    });
    t.diagnostic(`${version}: ${r.summary}`);
    const expected = version === FALLBACK_LABEL ? [KEPT_FAILURE, ...OLDER_SUITE_ONLY] : [KEPT_FAILURE];
    assert.deepEqual([...r.failures].sort(), [...expected].sort(), r.output.slice(-6000));
    assert.equal(r.failed, expected.length);
    assert.ok(r.passed >= 70, r.summary);
  } finally {
    await reg.close();
  }
});
