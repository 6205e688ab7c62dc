/**
 * Every default of the memory layer in one place, so a reader sees at once what an unconfigured
 * store does. Environment variables and options override these (see config.ts and open.ts).
 */
export const DEFAULTS = {
  /** Embedded data folder when MEMORY_DATA_DIR is unset. */
  dataDir: '.data',
  /** Settings tenant when MEMORY_TENANT is unset and a call names none. */
  tenant: 'default',
  /** Largest memory value in UTF-8 bytes (MEMORY_MAX_VALUE_BYTES). */
  maxValueBytes: 16 * 1024,
  /** Hard ceiling for maxValueBytes: a memory is a note, not a document. */
  maxValueBytesCeiling: 1024 * 1024,
  /** Memories returned by startSession. */
  sessionMemoryLimit: 20,
  sessionMemoryLimitMax: 1000,
  /** Memories returned by list(). */
  listLimit: 100,
  listLimitMax: 10_000,
  /** Matches returned by search(). */
  searchLimit: 10,
  searchLimitMax: 100,
  /** One database call gives up after this long (then TIMEOUT; writes go to the journal). */
  timeoutMs: 5_000,
  /** PostgreSQL pool size per process: a voice session rarely has two queries in flight. */
  maxConnections: 10,
  /**
   * Group commit (memory/combiner.ts): at most this many store calls, and read calls, in flight per
   * process; what arrives meanwhile goes together in the next call, up to maxBatch. One store call
   * in flight measured best (npm run bench: put/get with 8 callers; two let more commits through
   * but each carried fewer stores); reads do not commit, so two may go at once.
   */
  groupCommit: { storesInFlight: 1, readsInFlight: 2, maxBatch: 64 },
  /** An embedded client waits this long for the folder's owner to serve it. */
  embeddedWaitMs: 10_000,
  /** Supabase RPCs: PostgREST adds a hop, so a little more room. */
  supabaseTimeoutMs: 10_000,
  /** Background replay backoff while journal entries are pending. */
  replayMinMs: 500,
  replayMaxMs: 30_000,
  /** Secret rotation reads and rewrites this many settings rows per round trip. */
  rotationBatch: 100,
  /** Embeddings (MEMORY_EMBEDDING_MODEL): the endpoint when OPENAI_BASE_URL is unset. */
  embeddingBaseURL: 'https://api.openai.com/v1',
  /** pgvector's largest vector. */
  embeddingMaxDimensions: 16_000,
  /** Memories embedded per request. */
  embeddingBatch: 32,
  /** One embeddings request (a batch of memories) gives up after this long. */
  embeddingRequestTimeoutMs: 30_000,
  /** Search embeds its query within this long, else it answers lexically. */
  embeddingQueryTimeoutMs: 1_000,
  /** Vector matches below this cosine similarity are not matches. */
  embeddingMinSimilarity: 0.3,
  /** Retry backoff after a failed embedding. */
  embeddingRetryMinMs: 500,
  embeddingRetryMaxMs: 30_000,
  /** Characters of a memory's text sent to the model. */
  embeddingMaxChars: 8_000,
  /** Reciprocal rank fusion constant (the same as memory_search's). */
  rrfK: 60,
  /** Memory consent when a caller has not said (MEMORY_CONSENT_DEFAULT). */
  consentDefault: 'granted',
  /** Longest MEMORY_RETENTION_DAYS and per-memory expiry (100 years). */
  retentionDaysMax: 36_500,
  /** Largest MEMORY_MAX_PER_USER. */
  maxPerUserCeiling: 1_000_000,
  /** Rows removed per purge statement (each batch is its own short transaction). */
  purgeBatch: 1000,
  /** The worker's background purge runs this often (MEMORY_PURGE_INTERVAL_MS): hourly. */
  purgeIntervalMs: 60 * 60 * 1000,
  /**
   * A journaled store older than this is set aside on replay instead of applied (reported as
   * rejected, kept in <file>.rejected). It is what bounds the age of a pending store, and so how
   * long a tombstone must be kept: the purge removes tombstones older than this plus the clock
   * drift the journal accepts (MAX_CLOCK_DRIFT_MS, one day).
   */
  journalMaxAgeDays: 30,
  /** Who writes, for the audit log. */
  component: 'library',
} as const;

export const DEFAULT_MEMORY_LIMIT = DEFAULTS.sessionMemoryLimit;
export const MAX_MEMORY_LIMIT = DEFAULTS.sessionMemoryLimitMax;
export const MAX_LIST_LIMIT = DEFAULTS.listLimitMax;
