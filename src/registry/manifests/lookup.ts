// Names as users type them on the command line (`gemma2:2b`, `hf.co/user/repo:Q4_K_M`,
// `10.0.0.5:8080/team/tool`) → the stored tag. A name without a host resolves as a pull of
// namespace/model would (host folders in lookup order); a name with a host looks only there.
import { RegistryError } from '../../errors.js';
import { parseModelName } from '../../names.js';
import { manifestDir } from '../../storage/layout.js';
import type { ManifestStore, StoredManifest } from './manifests.js';

function hasHost(input: string): boolean {
  const i = input.indexOf('://');
  return (i >= 0 ? input.slice(i + 3) : input).split('/').length >= 3;
}

export async function findByName(manifests: ManifestStore, input: string): Promise<StoredManifest | null> {
  const n = parseModelName(input);
  if (!hasHost(input)) return manifests.find(n.namespace, n.model, n.tag);
  const repos = (await manifests.findRepos(n.namespace, n.model)).filter((r) => r.host.toLowerCase() === n.host.toLowerCase());
  for (const repo of repos) {
    const tags = await manifests.driver.list(manifestDir(repo.host, repo.namespace, repo.model));
    const hits = tags.filter((t) => t.toLowerCase() === n.tag.toLowerCase());
    for (const tag of hits.includes(n.tag) ? [n.tag, ...hits.filter((t) => t !== n.tag)] : hits) {
      const m = await manifests.read({ ...repo, tag });
      if (m) return m;
    }
  }
  return null;
}

export async function getByName(manifests: ManifestStore, input: string): Promise<StoredManifest> {
  const m = await findByName(manifests, input);
  if (!m) throw new RegistryError('MANIFEST_UNKNOWN', `${input} is not in this registry (see ollama-registry ls)`);
  return m;
}
