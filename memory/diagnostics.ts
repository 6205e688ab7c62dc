import { readVectorAvailability, type VectorAvailability } from './embeddings/embedder.js';
import { isMemoryError } from './errors.js';
import { loadMigrations, migrationStatus } from './migrations/index.js';
import { requireSql, type RpcTransport } from './transports/transport.js';

/**
 * The tables the schema creates, which the doctor expects (RLS on, present). memory_diagnostics()
 * reports every table named like ours (`memories`, `memory_*`), so one added later without RLS is
 * reported too, even before this list learns its name.
 */
export const MEMORY_TABLES = [
  'memory_schema_migrations',
  'memory_users',
  'memories',
  'memory_tombstones',
  'memory_settings',
  'memory_audit_log',
] as const;

export interface Diagnostics {
  /** The schema version the database reports (undefined: our schema is not there). */
  schemaVersion: string | undefined;
  /** The version this code needs. */
  expectedVersion: string;
  /** Row Level Security per table: every table of ours found, and MEMORY_TABLES (false when missing). */
  rls: Record<string, boolean>;
  /** Foreign keys from public tables to auth.users, e.g. a legacy profiles_id_fkey. */
  authForeignKeys: Array<{ table: string; constraint: string }>;
  /** How many stored secrets each encryption key id protects. */
  secretsByKeyId: Record<string, number>;
  /** Supabase only: whether PostgREST's schema cache knows our functions. */
  schemaCache: 'ok' | 'stale' | 'not-applicable';
  /** Whether vectors (pgvector, public.memory_embeddings) are available; undefined when it could not be asked. */
  vectors?: VectorAvailability;
}

interface DiagnosticsJson {
  schema_version: string | null;
  rls: Record<string, boolean> | null;
  auth_foreign_keys: Array<{ table: string; constraint: string }>;
  secrets_by_key_id: Record<string, number | string>;
}

// The same questions memory_diagnostics() answers, asked directly: this works on a database where
// our migrations never ran, which is exactly one that the doctor must be able to describe.
const RAW_DIAGNOSTICS = `
select
  null::text as schema_version,
  (select coalesce(jsonb_object_agg(c.relname, c.relrowsecurity), '{}'::jsonb)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p')
      and (c.relname = 'memories' or c.relname like 'memory\\_%' or c.relname = any($1::text[]))) as rls,
  (select coalesce(jsonb_agg(jsonb_build_object('table', cl.relname, 'constraint', con.conname)), '[]'::jsonb)
     from pg_constraint con
     join pg_class cl on cl.oid = con.conrelid join pg_namespace ns on ns.oid = cl.relnamespace
     join pg_class ref on ref.oid = con.confrelid join pg_namespace rns on rns.oid = ref.relnamespace
    where con.contype = 'f' and ns.nspname = 'public' and rns.nspname = 'auth' and ref.relname = 'users') as auth_foreign_keys,
  '{}'::jsonb as secrets_by_key_id`;

function fromJson(json: DiagnosticsJson, schemaCache: Diagnostics['schemaCache']): Diagnostics {
  const rls: Record<string, boolean> = Object.fromEntries(MEMORY_TABLES.map((t) => [t, json.rls?.[t] === true]));
  for (const [table, enabled] of Object.entries(json.rls ?? {})) rls[table] = enabled === true;
  return {
    schemaVersion: json.schema_version ?? undefined,
    expectedVersion: loadMigrations().at(-1)!.version,
    rls,
    authForeignKeys: json.auth_foreign_keys ?? [],
    secretsByKeyId: Object.fromEntries(Object.entries(json.secrets_by_key_id ?? {}).map(([k, n]) => [k, Number(n)])),
    schemaCache,
  };
}

/** Vectors, as memory_embedding_status() says (a schema before the embeddings migration: unknown). */
async function vectorsOf(transport: RpcTransport): Promise<VectorAvailability | undefined> {
  try {
    return await readVectorAvailability(transport);
  } catch {
    return undefined;
  }
}

/** Read what the doctor checks, through one function call when the schema is there. */
export async function readDiagnostics(transport: RpcTransport): Promise<Diagnostics> {
  const supabase = transport.kind === 'supabase';
  try {
    const json = (await transport.call('memory_diagnostics', {}, 'value')) as DiagnosticsJson;
    return { ...fromJson(json, supabase ? 'ok' : 'not-applicable'), vectors: await vectorsOf(transport) };
  } catch (error) {
    if (supabase && isMemoryError(error, 'SCHEMA_CACHE_STALE')) {
      return {
        ...fromJson({ schema_version: null, rls: null, auth_foreign_keys: [], secrets_by_key_id: {} }, 'stale'),
      };
    }
    if (supabase || !isMemoryError(error, 'SCHEMA_NOT_MIGRATED')) throw error;
    const sql = requireSql(transport, 'diagnosing an unmigrated database');
    const rows = await sql.query<DiagnosticsJson>(RAW_DIAGNOSTICS, [[...MEMORY_TABLES]]);
    const { current } = await migrationStatus(sql);
    return fromJson({ ...rows[0]!, schema_version: current ?? null }, 'not-applicable');
  }
}
