// /v2/ ping, tags/list and _catalog, for OCI tools (ollama itself never asks for these).
import { RegistryError } from '../errors.js';
import type { Handler } from './context.js';
import { sendJson } from './respond.js';

const MAX_PAGE = 10_000;

/** One page of a sorted list with distribution's n/last paging and a Link header. */
function page(list: string[], url: URL): { items: string[]; link?: string } {
  const nRaw = url.searchParams.get('n');
  const last = url.searchParams.get('last');
  let n = MAX_PAGE;
  if (nRaw !== null) {
    n = Number(nRaw);
    if (!/^\d{1,6}$/.test(nRaw) || n < 0 || n > MAX_PAGE) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be a whole number from 0 to ${MAX_PAGE}`);
    }
  }
  const rest = last === null ? list : list.filter((x) => x > last);
  const items = rest.slice(0, n);
  if (n > 0 && rest.length > n) {
    const next = new URL(url.pathname, 'http://x');
    next.searchParams.set('n', String(n));
    next.searchParams.set('last', items[items.length - 1]!);
    return { items, link: `<${next.pathname}${next.search}>; rel="next"` };
  }
  return { items };
}

export const ping: Handler = async ({ res }) => sendJson(res, 200, {});

export const catalog: Handler = async ({ app, res, url }) => {
  // Repositories the policy refuses to pull are not listed either.
  const visible = (await app.manifests.repositories()).filter((r) => {
    const [namespace, model] = r.split('/') as [string, string];
    return app.policy.decide('pull', namespace, model).allowed;
  });
  const { items, link } = page(visible, url);
  sendJson(res, 200, { repositories: items }, link ? { Link: link } : {});
};

type TagsRoute = { kind: 'tags'; namespace: string; model: string };

export const tagsList: Handler<TagsRoute> = async ({ app, res, url, route }) => {
  const tags = await app.manifests.tags(route.namespace, route.model);
  if (!tags) throw new RegistryError('NAME_UNKNOWN', `repository ${route.namespace}/${route.model} is not in this registry`);
  const { items, link } = page(tags, url);
  sendJson(res, 200, { name: `${route.namespace}/${route.model}`, tags: items }, link ? { Link: link } : {});
};
