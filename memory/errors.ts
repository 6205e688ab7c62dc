/**
 * Every failure the memory layer reports is a MemoryError with a stable `code`, so callers (the
 * LiveKit plugin, the CLI, tests) branch on the code and never on message text. Messages say what
 * went wrong and what to do about it.
 */
export const MEMORY_ERROR_CODES = [
  // Bad input: nothing was sent to the database.
  'INVALID_IDENTITY',
  'INVALID_NAMESPACE',
  'INVALID_CATEGORY',
  'INVALID_KEY',
  'INVALID_VALUE',
  'INVALID_OPTION',
  'INVALID_QUERY',
  'INVALID_CONFIG',
  'USER_MISMATCH',
  'INVALID_SETTINGS',
  'INVALID_TENANT',
  // Secrets.
  'ENCRYPTION_KEY_MISSING',
  'ENCRYPTION_KEY_INVALID',
  'DECRYPTION_FAILED',
  'ENCRYPTION_KEY_MISMATCH',
  // The backend.
  'BACKEND_UNAVAILABLE',
  'DATA_DIR_LOCKED',
  'SCHEMA_NOT_MIGRATED',
  'MIGRATION_FAILED',
  'PROVISIONING_FAILED',
  'USER_NOT_PROVISIONED',
  // export or erase of an identity the database and this host's journal know nothing about.
  'USER_NOT_FOUND',
  'IDENTITY_CONFLICT',
  'PERMISSION_DENIED',
  'SCHEMA_CACHE_STALE',
  'CONFLICT',
  'TIMEOUT',
  'DATABASE_ERROR',
  'INVALID_RESPONSE',
  'CLOSED',
  // Local files: the journal, and the embedded data folder, refused because another OS user could
  // have written them (permissions or owner), or a journal file that cannot be authenticated.
  'JOURNAL_UNSAFE',
  'DATA_DIR_UNSAFE',
  // Optional embeddings: the embeddings endpoint failed (network, HTTP status, timeout), or its answer
  // was refused (wrong count or dimension, not numbers, a zero vector): nothing was stored.
  'EMBEDDING_FAILED',
  'INVALID_EMBEDDING',
  // An optional peer dependency the chosen backend needs is not installed (pg, PGlite, supabase-js).
  'DEPENDENCY_MISSING',
  // Memory consent: the caller asked not to be remembered (CONSENT_DENIED), or the deployment asks
  // first (MEMORY_CONSENT_DEFAULT=ask) and the caller has not agreed yet (CONSENT_REQUIRED). Nothing
  // was stored.
  'CONSENT_DENIED',
  'CONSENT_REQUIRED',
  // A journaled store older than the journal's maximum age: set aside on replay, never applied.
  'JOURNAL_ENTRY_EXPIRED',
] as const;

export type MemoryErrorCode = (typeof MEMORY_ERROR_CODES)[number];

/** Codes that mean the caller passed something unacceptable; nothing reached the database. */
const INPUT_CODES: ReadonlySet<MemoryErrorCode> = new Set([
  'INVALID_IDENTITY',
  'INVALID_NAMESPACE',
  'INVALID_CATEGORY',
  'INVALID_KEY',
  'INVALID_VALUE',
  'INVALID_OPTION',
  'INVALID_QUERY',
  'INVALID_CONFIG',
  'USER_MISMATCH',
  'INVALID_SETTINGS',
  'INVALID_TENANT',
  'ENCRYPTION_KEY_INVALID',
]);

export interface MemoryErrorOptions {
  cause?: unknown;
  /** For wrapped failures (PROVISIONING_FAILED): the code of the underlying failure. */
  reason?: MemoryErrorCode;
}

export class MemoryError extends Error {
  override readonly name = 'MemoryError';
  readonly code: MemoryErrorCode;
  readonly reason: MemoryErrorCode | undefined;

  constructor(code: MemoryErrorCode, message: string, options: MemoryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.reason = options.reason;
  }

  /** True when the input was rejected before any database work. */
  get isInputError(): boolean {
    return INPUT_CODES.has(this.code);
  }
}

export function isMemoryError(error: unknown, code?: MemoryErrorCode): error is MemoryError {
  return error instanceof MemoryError && (code === undefined || error.code === code);
}
