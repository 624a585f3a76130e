// The OCI distribution-spec conformance suite v1.1.1 (all four categories: pull, push, content
// discovery, content management) against the real server, with a user that may push and delete
// and allowDelete on. One failure is expected and kept on purpose: "Retry previous blob chunk
// should return 416". ollama re-sends a part with the same Content-Range and gives up after 6
// tries on a 416 (protocol/ollama.md §5.4), so the registry answers 202.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConformance, runConformance } from './support/oci-conformance.js';
import { addUser } from './support/registry-auth.js';
import { startTestRegistry, tempDir } from './support/server.js';

const KEPT_FAILURE = 'Retry previous blob chunk should return 416';

test('OCI conformance v1.1.1: everything passes but the retry-chunk 416 that ollama needs as 202', { timeout: 900_000 }, async (t) => {
  let bin: string;
  try {
    bin = await buildConformance();
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    t.skip((e as Error).message);
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
    t.diagnostic(r.summary);
    assert.deepEqual(r.failures, [KEPT_FAILURE], r.output.slice(-6000));
    assert.equal(r.failed, 1);
    assert.ok(r.passed >= 70, r.summary);
  } finally {
    await reg.close();
  }
});
