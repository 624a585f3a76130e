// GET /v2/<name>/referrers/<digest>[?artifactType=…] (OCI distribution-spec 1.1): an image index
// of the manifests whose subject is that digest; an empty one when there are none.
import { OCI_INDEX } from '../registry/manifests/manifest-format.js';
import { findReferrers } from '../registry/manifests/referrers.js';
import type { Handler } from './context.js';

type ReferrersRoute = { kind: 'referrers'; namespace: string; model: string; digest: string };

export const referrers: Handler<ReferrersRoute> = async ({ app, res, route, url }) => {
  const artifactType = url.searchParams.get('artifactType') ?? undefined;
  const manifests = await findReferrers(app.manifests, route.namespace, route.model, route.digest, artifactType);
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  res.writeHead(200, {
    'Content-Type': OCI_INDEX,
    'Content-Length': body.length,
    ...(artifactType !== undefined ? { 'OCI-Filters-Applied': 'artifactType' } : {}),
  });
  res.end(body);
};
