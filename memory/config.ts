import { z } from 'zod';
import { databaseUrlProblem } from './database-url.js';
import { MemoryError } from './errors.js';
import { DNS_NAMESPACE } from './identity.js';
import { DEFAULTS } from './defaults.js';

/** An unset variable and an empty one mean the same: use the default. */
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (value === '' ? undefined : value), schema.optional());

const MemoryEnvSchema = z.object({
  // Parsed, not just prefix-matched: a bad port or an unencoded space must be INVALID_CONFIG here,
  // not a driver failure later.
  DATABASE_URL: optional(
    z.string().superRefine((url, ctx) => {
      const problem = databaseUrlProblem(url);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  ),
  MEMORY_DATA_DIR: optional(z.string()),
  MEMORY_UUID_NAMESPACE: optional(z.uuid({ message: 'must be a UUID, e.g. ' + DNS_NAMESPACE })),
  MEMORY_MAX_VALUE_BYTES: optional(z.coerce.number().int().min(1).max(DEFAULTS.maxValueBytesCeiling)),
  MEMORY_TENANT: optional(
    z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'must be 1 to 128 letters, digits, _ . : or -'),
  ),
  SUPABASE_URL: optional(z.url({ message: 'must be your project URL, e.g. https://<project>.supabase.co' })),
  SUPABASE_SERVICE_ROLE_KEY: optional(z.string().min(20, 'must be the service_role key from the project API settings')),
  MEMORY_EMBEDDING_MODEL: optional(z.string().max(200, 'must be a model name of at most 200 characters')),
  MEMORY_EMBEDDING_DIMENSIONS: optional(z.coerce.number().int().min(1).max(DEFAULTS.embeddingMaxDimensions)),
  // Checked only when MEMORY_EMBEDDING_MODEL is set (the agent's LLM reads it too): see embeddings/client.ts.
  OPENAI_BASE_URL: optional(z.string()),
  OPENAI_API_KEY: optional(z.string()),
  // The memory lifecycle (consent, retention, the cap): see lifecycle.ts.
  MEMORY_CONSENT_DEFAULT: optional(z.enum(['granted', 'ask', 'denied'], { message: 'must be granted, ask or denied' })),
  MEMORY_RETENTION_DAYS: optional(
    z.coerce
      .number({ message: 'must be a whole number of days' })
      .int('must be a whole number of days')
      .min(1, 'must be at least 1 day (unset it to keep memories until they are forgotten)')
      .max(DEFAULTS.retentionDaysMax, `must be at most ${DEFAULTS.retentionDaysMax} days`),
  ),
  MEMORY_MAX_PER_USER: optional(
    z.coerce
      .number({ message: 'must be a whole number of memories' })
      .int('must be a whole number of memories')
      .min(1, 'must be at least 1 (unset it for no cap)')
      .max(DEFAULTS.maxPerUserCeiling, `must be at most ${DEFAULTS.maxPerUserCeiling}`),
  ),
  MEMORY_PURGE_INTERVAL_MS: optional(
    z.coerce
      .number({ message: 'must be a number of milliseconds' })
      .int('must be a whole number of milliseconds')
      .min(0, 'must be 0 (no background purge) or more milliseconds')
      .max(2_147_483_647, 'must be at most 2147483647 milliseconds (about 24 days)'),
  ),
});

/** A caller's memory consent as it applies now: `ask` means nobody has asked them yet, and the deployment asks first. */
export type MemoryConsent = 'granted' | 'ask' | 'denied';

/** The memory lifecycle of a deployment. */
export interface LifecycleConfig {
  /** MEMORY_CONSENT_DEFAULT: the consent of a caller who has not said (default granted). */
  consentDefault: MemoryConsent;
  /** MEMORY_RETENTION_DAYS: memories not updated for this many days expire (null: never). */
  retentionDays: number | null;
  /** MEMORY_MAX_PER_USER: at most this many memories per user, the least recently used evicted (null: no cap). */
  maxPerUser: number | null;
  /** MEMORY_PURGE_INTERVAL_MS: how often the worker's background purge runs (0: never). */
  purgeIntervalMs: number;
}

export interface MemoryConfig {
  /** Set: PostgreSQL. Unset: embedded PGlite in dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  namespace: string;
  maxValueBytes: number;
  /** Tenant of settings when a call names none. */
  tenant: string;
  /** Both set: Supabase through supabase-js (takes precedence over DATABASE_URL). */
  supabase: { url: string; serviceRoleKey: string } | undefined;
  /** MEMORY_EMBEDDING_MODEL set: memories are embedded through `${baseURL}/embeddings`. */
  embeddings:
    { model: string; baseURL: string; apiKey: string | undefined; dimensions: number | undefined } | undefined;
  lifecycle: LifecycleConfig;
}

/** Read the memory layer's settings from the environment; a bad value is an error naming the variable. */
export function loadMemoryConfig(env: NodeJS.ProcessEnv = process.env): MemoryConfig {
  const parsed = MemoryEnvSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MemoryError('INVALID_CONFIG', `${issue.path.join('.')} ${issue.message}`);
  }
  const vars = parsed.data;
  return {
    databaseUrl: vars.DATABASE_URL,
    dataDir: vars.MEMORY_DATA_DIR ?? DEFAULTS.dataDir,
    namespace: (vars.MEMORY_UUID_NAMESPACE ?? DNS_NAMESPACE).toLowerCase(),
    maxValueBytes: vars.MEMORY_MAX_VALUE_BYTES ?? DEFAULTS.maxValueBytes,
    tenant: vars.MEMORY_TENANT ?? DEFAULTS.tenant,
    supabase: supabaseConfig(vars.SUPABASE_URL, vars.SUPABASE_SERVICE_ROLE_KEY),
    embeddings: vars.MEMORY_EMBEDDING_MODEL
      ? {
          model: vars.MEMORY_EMBEDDING_MODEL,
          baseURL: vars.OPENAI_BASE_URL ?? DEFAULTS.embeddingBaseURL,
          apiKey: vars.OPENAI_API_KEY,
          dimensions: vars.MEMORY_EMBEDDING_DIMENSIONS,
        }
      : undefined,
    lifecycle: {
      consentDefault: vars.MEMORY_CONSENT_DEFAULT ?? DEFAULTS.consentDefault,
      retentionDays: vars.MEMORY_RETENTION_DAYS ?? null,
      maxPerUser: vars.MEMORY_MAX_PER_USER ?? null,
      purgeIntervalMs: vars.MEMORY_PURGE_INTERVAL_MS ?? DEFAULTS.purgeIntervalMs,
    },
  };
}

function supabaseConfig(url: string | undefined, key: string | undefined): MemoryConfig['supabase'] {
  if (!url && !key) return undefined;
  if (!url || !key) {
    throw new MemoryError(
      'INVALID_CONFIG',
      `${url ? 'SUPABASE_SERVICE_ROLE_KEY' : 'SUPABASE_URL'} is missing: the Supabase backend needs both SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY`,
    );
  }
  return { url, serviceRoleKey: key };
}
