import { z } from 'zod';
import type { MemoryConsent } from './config.js';
import { MemoryError } from './errors.js';
import type { JsonArg } from './transports/call.js';
import type { RpcTransport } from './transports/transport.js';

/**
 * Every SQL function the store calls, with its arguments and the shape of its answer. It is the
 * one place that knows a function's name, its arguments and what comes back: callers get typed
 * results without casts, and replay uses the very same entries. An answer is untrusted input (a
 * schema from another version, a proxy, a PostgREST in front): it is checked against its schema
 * before anyone reads it, and a mismatch is a typed error that says to migrate.
 */

const time = z.union([z.string(), z.date()]);
const count = z.union([z.number(), z.string()]).transform(Number);
const json = z.record(z.string(), z.unknown());

const UserJson = z.object({
  id: z.string(),
  identity: z.string(),
  created_at: time,
  last_seen_at: time,
  session_count: count,
  // The lifecycle migration's consent state (null: the deployment default applies).
  memory_consent: z.enum(['granted', 'denied']).nullish(),
  memory_consent_at: time.nullish(),
});

export const MemoryRowJson = z.object({
  category: z.string(),
  key: z.string(),
  value: z.string(),
  created_at: time,
  updated_at: time,
  clock: z.string().optional(),
  expires_at: time.nullish(),
});
export type MemoryRow = z.infer<typeof MemoryRowJson>;

export const SettingsJson = z.object({
  tenant_id: z.string(),
  config: json.nullable().transform((c) => c ?? {}),
  secrets: json.nullable().transform((s) => s ?? {}),
  version: count,
  updated_at: time,
  clock: z.string().optional(),
});
export type SettingsRow = z.infer<typeof SettingsJson>;

const AuditJson = z.object({
  at: time,
  action: z.string(),
  component: z.string(),
  tenant_id: z.string().nullable(),
  detail: json.nullable().transform((d) => d ?? {}),
});

const EncryptedSecretsJson = z.record(z.string(), z.unknown());

const StoreAnswerJson = z.object({
  applied: z.boolean(),
  clock: z.string(),
  updated_at: time.nullish(),
  current_clock: z.string().nullish(),
  expires_at: time.nullish(),
  evicted: z.array(z.object({ category: z.string(), key: z.string() })).nullish(),
});

/** Function name -> arguments, result schema, and whether it returns one value or a set of rows. */
export const RPC = {
  memory_start_session: {
    shape: 'value',
    result: z.object({
      user: UserJson,
      first_session: z.boolean(),
      memories: z
        .array(MemoryRowJson)
        .nullable()
        .transform((m) => m ?? []),
      settings: SettingsJson.nullable(),
    }),
  },
  memory_provision: { shape: 'value', result: UserJson },
  memory_store: { shape: 'value', result: StoreAnswerJson },
  memory_retrieve: { shape: 'value', result: z.string().nullable() },
  memory_store_batch: { shape: 'value', result: z.array(StoreAnswerJson) },
  memory_retrieve_batch: { shape: 'value', result: z.array(z.string().nullable()) },
  memory_get: {
    shape: 'value',
    result: z.object({ value: z.string().nullable(), clock: z.string().nullable(), deleted: z.string().nullable() }),
  },
  memory_list: { shape: 'rows', result: z.array(MemoryRowJson) },
  memory_search: {
    shape: 'rows',
    result: z.array(
      MemoryRowJson.extend({ clock: z.string(), score: z.union([z.number(), z.string()]).transform(Number) }),
    ),
  },
  memory_forget: { shape: 'value', result: z.object({ existed: z.boolean(), clock: z.string() }) },
  memory_forget_all: { shape: 'value', result: count },
  memory_store_many: { shape: 'value', result: count },
  memory_set_consent: {
    shape: 'value',
    result: z.object({
      consent: z.enum(['granted', 'denied']),
      previous: z.enum(['granted', 'denied']).nullable(),
      consent_at: time,
      erased: count,
      tombstones: count,
    }),
  },
  memory_purge: { shape: 'value', result: z.object({ memories: count, tombstones: count }) },
  memory_save_settings: { shape: 'value', result: SettingsJson },
  memory_get_settings: { shape: 'value', result: SettingsJson.nullable() },
  memory_audit: { shape: 'value', result: z.unknown() },
  memory_settings_to_rotate: {
    shape: 'rows',
    result: z.array(
      z.object({ user_id: z.string(), tenant_id: z.string(), secrets: EncryptedSecretsJson, version: count }),
    ),
  },
  memory_replace_secrets: { shape: 'value', result: z.boolean() },
  memory_link: { shape: 'value', result: z.object({ previous_auth_user_id: z.string().nullable() }) },
  memory_profile: {
    shape: 'value',
    result: z.object({
      user: UserJson.extend({ auth_user_id: z.string().nullable() }).nullable(),
      memory_count: count,
      settings: z
        .array(SettingsJson)
        .nullable()
        .transform((s) => s ?? []),
      audit: z
        .array(AuditJson)
        .nullable()
        .transform((a) => a ?? []),
    }),
  },
  memory_diagnostics: {
    shape: 'value',
    result: z.object({
      schema_version: z.string().nullable(),
      rls: z.record(z.string(), z.boolean()).nullable(),
      auth_foreign_keys: z
        .array(z.object({ table: z.string(), constraint: z.string() }))
        .nullable()
        .transform((f) => f ?? []),
      secrets_by_key_id: z
        .record(z.string(), count)
        .nullable()
        .transform((s) => s ?? {}),
    }),
  },
  memory_schema_version: { shape: 'value', result: z.string().nullable() },
  memory_export_user: {
    shape: 'value',
    result: z
      .object({
        user: UserJson.extend({
          auth_user_id: z.string().nullable(),
          memory_consent: z.enum(['granted', 'denied']).nullable(),
          memory_consent_at: time.nullable(),
        }).nullable(),
        memories: z.array(MemoryRowJson.extend({ expires_at: time.nullable(), clock: z.string() })),
        tombstones: z.array(z.object({ category: z.string(), key: z.string(), clock: z.string() })),
        settings: z.array(SettingsJson),
        audit: z.array(AuditJson),
      })
      .nullable(),
  },
  memory_erase_user: {
    shape: 'value',
    // The full answer first: a plain object schema strips unknown keys, so {existed: false} would
    // match any answer and drop the rest.
    result: z.union([
      z.object({
        existed: z.boolean(),
        erased_at: time,
        clock: z.string(),
        user: z.boolean(),
        memories: count,
        tombstones: count,
        settings: count,
        audit: count,
        embeddings: count,
      }),
      z.strictObject({ existed: z.literal(false) }),
    ]),
  },
  memory_erased: { shape: 'value', result: z.string().nullable() },
  memory_embedding_status: {
    shape: 'value',
    result: z.object({
      installable: z.boolean(),
      extension_version: z.string().nullable(),
      table: z.boolean(),
    }),
  },
  memory_embeddings_pending: {
    shape: 'rows',
    result: z.array(z.object({ category: z.string(), key: z.string(), value: z.string(), content_hash: z.string() })),
  },
  memory_embeddings_put: { shape: 'value', result: count },
  memory_embeddings_search: {
    shape: 'rows',
    result: z.array(
      MemoryRowJson.extend({ clock: z.string(), similarity: z.union([z.number(), z.string()]).transform(Number) }),
    ),
  },
} as const satisfies Record<string, { shape: 'value' | 'rows'; result: z.ZodType }>;

type Uuid = string;
type Clock = string | null;
/** MEMORY_RETENTION_DAYS, or null: no retention limit. */
type Days = number | null;

/** The arguments of each function, by name as the SQL declares them. */
export interface RpcArgs {
  memory_start_session: {
    p_user_id: Uuid;
    p_identity: string;
    p_memory_limit: number;
    p_tenant_id: string;
    p_retention_days: Days;
  };
  memory_provision: { p_user_id: Uuid; p_identity: string };
  /** p_clock null: an online write, ordered by the server. A clock: a journal replay. */
  memory_store: {
    p_user_id: Uuid;
    p_category: string;
    p_key: string;
    p_value: string;
    p_clock: Clock;
    /** ISO timestamp, or null: no expiry of its own. */
    p_expires_at: string | null;
    /** The deployment's MEMORY_CONSENT_DEFAULT, for a caller with no recorded state. */
    p_consent: MemoryConsent;
    p_max_per_user: number | null;
    p_retention_days: Days;
  };
  /** p_items: [{user_id, category, key, value, expires_at}], online stores (memory/group-commit.ts). */
  memory_store_batch: {
    p_items: JsonArg;
    p_consent: MemoryConsent;
    p_max_per_user: number | null;
    p_retention_days: Days;
  };
  /** p_items: [{user_id, category, key}], plain reads (memory/group-commit.ts). */
  memory_retrieve_batch: { p_items: JsonArg; p_retention_days: Days; p_touch: boolean };
  /** p_touch: the read counts as a use for the cap's LRU order (only with a cap). */
  memory_retrieve: { p_user_id: Uuid; p_category: string; p_key: string; p_retention_days: Days; p_touch: boolean };
  memory_get: { p_user_id: Uuid; p_category: string; p_key: string; p_retention_days: Days };
  memory_list: { p_user_id: Uuid; p_category: string | null; p_limit: number; p_retention_days: Days };
  memory_search: {
    p_user_id: Uuid;
    p_query: string;
    p_category: string | null;
    p_limit: number;
    p_retention_days: Days;
  };
  memory_forget: { p_user_id: Uuid; p_category: string; p_key: string; p_clock: Clock };
  memory_forget_all: { p_user_id: Uuid };
  /** p_memories: [{category, key, value, expires_at?}] */
  memory_store_many: {
    p_user_id: Uuid;
    p_memories: JsonArg;
    p_consent: MemoryConsent;
    p_max_per_user: number | null;
    p_retention_days: Days;
  };
  memory_set_consent: { p_user_id: Uuid; p_identity: string; p_consent: 'granted' | 'denied'; p_component: string };
  memory_purge: {
    p_retention_days: Days;
    p_tombstone_max_age_days: number | null;
    p_batch: number;
    p_component: string;
  };
  memory_save_settings: {
    p_user_id: Uuid;
    p_tenant_id: string;
    p_config: JsonArg | null;
    p_secrets: JsonArg;
    p_remove_secrets: JsonArg;
    p_component: string;
    p_clock: Clock;
    /** Key ids the writer can read: the save is refused if it would leave a secret under another key. */
    p_key_ids: string[] | null;
  };
  memory_get_settings: { p_user_id: Uuid; p_tenant_id: string };
  memory_audit: {
    p_user_id: Uuid;
    p_tenant_id: string | null;
    p_action: string;
    p_component: string;
    p_detail: JsonArg;
  };
  memory_settings_to_rotate: { p_kid: string; p_limit: number };
  memory_replace_secrets: {
    p_user_id: Uuid;
    p_tenant_id: string;
    p_secrets: JsonArg;
    p_expected_version: number;
    p_component: string;
  };
  memory_link: { p_user_id: Uuid; p_auth_user_id: Uuid | null; p_component: string };
  memory_profile: { p_user_id: Uuid };
  memory_diagnostics: Record<string, never>;
  memory_schema_version: Record<string, never>;
  memory_export_user: { p_user_id: Uuid; p_component: string };
  /** p_marker: the erasure marker (memory/erasure.ts); p_only_if_stored: write nothing for an unknown user. */
  memory_erase_user: { p_user_id: Uuid; p_marker: string; p_component: string; p_only_if_stored: boolean };
  /** Every marker of one user under the keys the caller knows. */
  memory_erased: { p_markers: string[] };
  memory_embedding_status: Record<string, never>;
  memory_embeddings_pending: { p_user_id: Uuid; p_model: string; p_limit: number };
  /** p_items: [{category, key, content_hash, embedding: number[]}] */
  memory_embeddings_put: { p_user_id: Uuid; p_model: string; p_items: JsonArg };
  /** p_embedding: the query's vector as text, '[0.1,0.2,...]' */
  memory_embeddings_search: {
    p_user_id: Uuid;
    p_model: string;
    p_embedding: string;
    p_category: string | null;
    p_limit: number;
    p_retention_days: Days;
  };
}

export type RpcName = keyof typeof RPC & keyof RpcArgs;
export type RpcResult<F extends RpcName> = z.output<(typeof RPC)[F]['result']>;

/** Call one schema function: one round trip, a checked answer. */
export async function rpc<F extends RpcName>(transport: RpcTransport, fn: F, args: RpcArgs[F]): Promise<RpcResult<F>> {
  const spec = RPC[fn];
  const raw = await transport.call(fn, args, spec.shape);
  const parsed = spec.result.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MemoryError(
      'INVALID_RESPONSE',
      `${fn} answered in an unexpected shape (${issue.path.join('.') || 'result'}: ${issue.message}): the database schema is not the one this version expects; run \`lk-memory migrate\` (Supabase: supabase db push)`,
    );
  }
  return parsed.data as RpcResult<F>;
}
