import { TENANT_PATTERN } from '../memory/index.js';

/**
 * The settings tenant a job's dispatch names: `{"tenant": "..."}` in the job metadata, which only
 * the backend that minted the token or created the dispatch can set. Undefined when there is none
 * (the store's tenant applies: MEMORY_TENANT, else "default") or when it is not a valid tenant.
 */
export function tenantFromMetadata(metadata: string | undefined): string | undefined {
  if (!metadata) return undefined;
  try {
    const tenant = (JSON.parse(metadata) as { tenant?: unknown }).tenant;
    return typeof tenant === 'string' && TENANT_PATTERN.test(tenant) ? tenant : undefined;
  } catch {
    return undefined;
  }
}
