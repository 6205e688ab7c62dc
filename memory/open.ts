import path from 'node:path';
import { DEFAULTS } from './defaults.js';
import { loadMemoryConfig, type MemoryConfig, type MemoryConsent } from './config.js';
import { checkLifecycle } from './lifecycle.js';
import { checkDatabaseUrl } from './database-url.js';
import { openEmbedded, type EmbeddedRole } from './embedded/open-embedded.js';
import { parseNamespace } from './identity.js';
import { MemoryError, isMemoryError } from './errors.js';
import { checkLimit } from './labels.js';
import { loadMigrations } from './migrations/index.js';
import { Journal, journalDir } from './journal/journal.js';
import { SecretCipher } from './settings/cipher.js';
import { checkTenant } from './settings/schema.js';
import { MemoryStore } from './store.js';
import { checkGroupCommit, type GroupCommit } from './combiner.js';
import { rpc } from './rpc.js';
import { importOptional } from './optional-dependency.js';
import type { EmbeddingOptions } from './embeddings/client.js';
import { Embedder } from './embeddings/embedder.js';
import type { RpcTransport } from './transports/transport.js';

export interface OpenMemoryOptions {
  /** PostgreSQL connection string. Default: DATABASE_URL. When neither is set, the embedded database is used. */
  databaseUrl?: string;
  /** Embedded data folder. Default: MEMORY_DATA_DIR, else `.data`. */
  dataDir?: string;
  /** UUIDv5 namespace for user ids. Default: MEMORY_UUID_NAMESPACE, else the DNS namespace. */
  namespace?: string;
  /** Largest value in UTF-8 bytes. Default: MEMORY_MAX_VALUE_BYTES, else 16 KiB. */
  maxValueBytes?: number;
  /** Embedded only: own the folder, connect to its owner, or pick (default `auto`); see EmbeddedRole. */
  embeddedRole?: EmbeddedRole;
  /** Embedded owner only: serve the folder to other processes (default true). */
  serve?: boolean;
  /** Embedded only: how long a client waits for the folder's owner to serve it (default 10 s). */
  embeddedWaitMs?: number;
  /** Apply pending migrations on open (default true; an embedded client leaves that to the owner). */
  migrate?: boolean;
  /** Connection pool size for PostgreSQL and embedded clients. */
  maxConnections?: number;
  /**
   * PostgreSQL and embedded clients: close a connection idle for this long (default 30 s). 0 keeps
   * idle connections open: a job process waiting for its call keeps the one it warmed.
   */
  idleTimeoutMs?: number;
  /**
   * Group commit: at most `storesInFlight` store calls in flight per process (default 1); stores
   * that arrive meanwhile, of any users, go together in the next call (one round trip, one
   * transaction, one WAL flush), up to `maxBatch` (default 64). Each store is still acknowledged
   * only once committed, with its own receipt or error. Plain reads likewise, `readsInFlight` at
   * once (default 2). false: every call alone.
   */
  groupCommit?: Partial<GroupCommit> | false;
  /** Give up on one database call after this long (default 5 s; then TIMEOUT, and writes go to the journal). */
  timeoutMs?: number;
  /** Environment to read defaults from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Supabase project (default: SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY); wins over DATABASE_URL. */
  supabase?: { url: string; serviceRoleKey: string; fetch?: typeof fetch };
  /** Encrypts settings secrets (default: from MEMORY_ENCRYPTION_KEY and MEMORY_ENCRYPTION_PREVIOUS_KEYS). */
  cipher?: SecretCipher;
  /** Settings tenant when a call names none (default: MEMORY_TENANT, else "default"). */
  tenant?: string;
  /** Who writes, for the audit log (default "library"). */
  component?: string;
  /**
   * The local journal for writes made while the database is unreachable (default: on, in
   * <dataDir>/journal). false: such writes fail instead.
   */
  journal?: boolean;
  /** Replay the journal in the background while anything is pending (default: on with the journal). */
  backgroundSync?: boolean;
  /**
   * Optional embeddings: memories are embedded in the background through an OpenAI-compatible
   * `POST {baseURL}/embeddings` and search fuses vector similarity with the lexical ranking, where
   * the database has pgvector. Default: on when MEMORY_EMBEDDING_MODEL is set (baseURL from
   * OPENAI_BASE_URL, apiKey from OPENAI_API_KEY, dimensions from MEMORY_EMBEDDING_DIMENSIONS).
   * false: off whatever the environment says.
   */
  embeddings?: EmbeddingOptions | false;
  /**
   * Consent of a caller who has not said (default: MEMORY_CONSENT_DEFAULT, else `granted`). `ask`:
   * nothing is stored for a caller until they agree (UserMemory.setConsent('granted')); `denied`:
   * nothing is stored unless they ask to be remembered.
   */
  consentDefault?: MemoryConsent;
  /** Memories not updated for this many days expire (default: MEMORY_RETENTION_DAYS; null: never). */
  retentionDays?: number | null;
  /** At most this many memories per user, the least recently used evicted (default: MEMORY_MAX_PER_USER; null: no cap). */
  maxPerUser?: number | null;
}

/** The embedding settings: the option, else the environment's; undefined when off. */
function embeddingSettings(
  option: OpenMemoryOptions['embeddings'],
  config: MemoryConfig['embeddings'],
): (EmbeddingOptions & { baseURL: string }) | undefined {
  if (option === false) return undefined;
  if (option === undefined) {
    if (!config) return undefined;
    return { ...config, apiKey: config.apiKey };
  }
  if (typeof option.model !== 'string' || option.model.length === 0 || option.model.length > 200) {
    throw new MemoryError('INVALID_OPTION', 'embeddings.model must be a model name of 1 to 200 characters');
  }
  if (option.dimensions !== undefined)
    checkLimit(option.dimensions, 'embeddings.dimensions', DEFAULTS.embeddingMaxDimensions);
  return {
    ...option,
    baseURL: option.baseURL ?? config?.baseURL ?? DEFAULTS.embeddingBaseURL,
    apiKey: option.apiKey ?? config?.apiKey,
  };
}

async function openTransport(
  options: OpenMemoryOptions,
  supabase: OpenMemoryOptions['supabase'],
  databaseUrl: string | undefined,
  dataDir: string,
): Promise<RpcTransport> {
  // Each driver is loaded only for the backend in use (optional peer dependencies).
  if (supabase) {
    const { createSupabaseTransport } = await importOptional(
      '@supabase/supabase-js',
      'the Supabase backend (SUPABASE_URL)',
      () => import('./transports/supabase.js'),
    );
    return createSupabaseTransport({ ...supabase, timeoutMs: options.timeoutMs });
  }
  if (databaseUrl) {
    const { createPostgresTransport } = await importOptional(
      'pg',
      'the PostgreSQL backend (DATABASE_URL)',
      () => import('./transports/postgres.js'),
    );
    return createPostgresTransport({
      connectionString: databaseUrl,
      maxConnections: options.maxConnections,
      idleTimeoutMs: options.idleTimeoutMs,
      queryTimeoutMs: options.timeoutMs,
      connectTimeoutMs: options.timeoutMs,
    });
  }
  return openEmbedded({
    dataDir: path.resolve(dataDir),
    role: options.embeddedRole,
    serve: options.serve,
    waitMs: options.embeddedWaitMs,
    maxConnections: options.maxConnections,
    idleTimeoutMs: options.idleTimeoutMs,
  });
}

/**
 * Open the memory layer: PostgreSQL when a database URL is given (DATABASE_URL), otherwise the
 * embedded PGlite database in MEMORY_DATA_DIR, migrated on open.
 */
export async function openMemory(options: OpenMemoryOptions = {}): Promise<MemoryStore> {
  const config = loadMemoryConfig(options.env ?? process.env);
  const namespace = parseNamespace(options.namespace ?? config.namespace);
  const maxValueBytes = checkLimit(
    options.maxValueBytes ?? config.maxValueBytes,
    'maxValueBytes',
    DEFAULTS.maxValueBytesCeiling,
  );
  const tenant = checkTenant(options.tenant ?? config.tenant);
  const cipher = options.cipher ?? SecretCipher.fromEnv(options.env ?? process.env);
  const supabase = options.supabase ?? config.supabase;
  // An option is checked like DATABASE_URL is (INVALID_CONFIG, not a driver error later).
  const databaseUrl = options.databaseUrl ? checkDatabaseUrl(options.databaseUrl, 'databaseUrl') : config.databaseUrl;
  const embedding = embeddingSettings(options.embeddings, config.embeddings);
  const lifecycle = checkLifecycle(
    { consentDefault: options.consentDefault, retentionDays: options.retentionDays, maxPerUser: options.maxPerUser },
    config.lifecycle,
  );
  if (embedding && !embedding.apiKey && embedding.baseURL === DEFAULTS.embeddingBaseURL) {
    throw new MemoryError(
      'INVALID_CONFIG',
      'MEMORY_EMBEDDING_MODEL is set but OPENAI_API_KEY is not: set the key, or OPENAI_BASE_URL for another OpenAI-compatible server, or unset MEMORY_EMBEDDING_MODEL',
    );
  }
  const groupCommit =
    options.groupCommit === false ? false : checkGroupCommit({ ...DEFAULTS.groupCommit, ...options.groupCommit });
  const transport = await openTransport(options, supabase, databaseUrl, options.dataDir ?? config.dataDir);
  let embeddings: Embedder | undefined;
  try {
    embeddings = embedding ? new Embedder(transport, embedding) : undefined;
  } catch (error) {
    await transport.close();
    throw error;
  }
  // The journal's folder is checked (JOURNAL_UNSAFE) and its key loaded before any use.
  let journal: Journal | undefined;
  if (options.journal !== false) {
    try {
      journal = await Journal.open({
        dir: journalDir(options.dataDir ?? config.dataDir),
        target: journalTarget(transport),
        namespace,
        maxValueBytes,
      });
    } catch (error) {
      await transport.close();
      throw error;
    }
  }
  const store = new MemoryStore(transport, {
    namespace,
    maxValueBytes,
    cipher,
    tenant,
    component: options.component,
    journal,
    embeddings,
    lifecycle,
    groupCommit,
  });
  if ((options.migrate ?? true) && transport.kind !== 'embedded-socket') {
    try {
      if (transport.kind === 'supabase') await requireSchemaVersion(transport);
      else await store.migrate();
    } catch (error) {
      // With the database unreachable and a journal to keep writes in, open anyway: writes wait in
      // the journal, and the replay migrates first once the database is back.
      if (
        journal &&
        transport.kind !== 'supabase' &&
        (isMemoryError(error, 'BACKEND_UNAVAILABLE') || isMemoryError(error, 'TIMEOUT'))
      ) {
        store.migrateBeforeReplay();
      } else {
        await store.close();
        throw error;
      }
    }
  }
  if (journal && options.backgroundSync !== false) store.startBackgroundSync();
  // Ask the database about vectors now, not in the first search.
  void embeddings?.availability();
  return store;
}

/**
 * Supabase's schema is migrated by the Supabase CLI (or `lk-memory migrate` over DATABASE_URL),
 * not through the API: check that it is at least what this version of the code needs.
 */
async function requireSchemaVersion(transport: RpcTransport): Promise<void> {
  const needed = loadMigrations().at(-1)!.version;
  let current: string | null;
  try {
    current = await rpc(transport, 'memory_schema_version', {});
  } catch (error) {
    if (isMemoryError(error, 'SCHEMA_CACHE_STALE') || isMemoryError(error, 'SCHEMA_NOT_MIGRATED')) {
      throw new MemoryError(
        'SCHEMA_NOT_MIGRATED',
        `the Supabase project has no livekit-user-memory schema (or PostgREST cannot see it): apply supabase/migrations with \`supabase db push\` (or \`lk-memory migrate\` with DATABASE_URL), then NOTIFY pgrst, 'reload schema'`,
        { cause: error },
      );
    }
    throw error;
  }
  if (!current || current < needed) {
    throw new MemoryError(
      'SCHEMA_NOT_MIGRATED',
      `the Supabase schema is at ${current ?? 'an unknown version'} but this version needs ${needed}: apply supabase/migrations with \`supabase db push\``,
    );
  }
}

/** What the journal is for: the database, named without credentials. */
function journalTarget(transport: RpcTransport): string {
  return transport.location.replace(/ \(via the socket of pid \d+\)$/, '').replace(/^embedded /, 'embedded:');
}
