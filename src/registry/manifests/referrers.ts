// The OCI 1.1 referrers of a manifest: every manifest of the repository (tagged or stored by
// digest only) whose `subject` is that digest, as the descriptors of an image index.
import { parseManifest, type Descriptor } from './manifest-format.js';
import type { ManifestStore } from './manifests.js';

export async function findReferrers(store: ManifestStore, namespace: string, model: string, subject: string, artifactType?: string): Promise<Descriptor[]> {
  const refs = [...((await store.tags(namespace, model)) ?? []), ...(await store.untaggedOf(namespace, model))];
  const out = new Map<string, Descriptor>();
  for (const ref of refs) {
    const m = await store.find(namespace, model, ref);
    if (!m || out.has(m.digest)) continue;
    let parsed;
    try {
      parsed = parseManifest(m.bytes);
    } catch {
      continue;
    }
    if (parsed.subject?.digest !== subject) continue;
    // The spec: an artifact's type is its artifactType, else (image manifests) its config's media type.
    const type = parsed.artifactType ?? (parsed.kind === 'image' ? parsed.config?.mediaType : undefined);
    if (artifactType !== undefined && type !== artifactType) continue;
    out.set(m.digest, {
      mediaType: m.mediaType, digest: m.digest, size: m.bytes.length,
      ...(type ? { artifactType: type } : {}), ...(parsed.annotations ? { annotations: parsed.annotations } : {}),
    });
  }
  return [...out.values()];
}
