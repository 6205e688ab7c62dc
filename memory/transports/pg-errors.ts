import { MemoryError, type MemoryErrorCode } from '../errors.js';

/** Node socket errors and pg messages that mean "the database is not there (any more)". */
const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ENOENT', // a Unix socket that is gone
]);
const NETWORK_MESSAGES = [
  /connection terminated/i,
  /connection timeout/i,
  /Client has encountered a connection error/i,
  /not queryable/i,
  /the database system is (starting up|shutting down)/i,
];
/** pg's client-side query_timeout and connection timeouts: the database did not answer in time. */
const TIMEOUT_MESSAGES = [
  /Query read timeout/i,
  /timeout exceeded when trying to connect/i,
  /Connection terminated due to connection timeout/i,
];

/**
 * A connection pooler (PgBouncer, as behind Supabase's pooled connection string) stays up while
 * the database behind it is down or full, and says so with its own errors, all under SQLSTATE
 * 08P01 (protocol_violation), which PostgreSQL itself uses for real protocol errors: only the
 * words tell them apart. Each means "no database now", never "this request is wrong", so a write
 * goes to the journal instead of failing. Messages as PgBouncer 1.18-1.24 words them.
 */
const POOLER_UNAVAILABLE_MESSAGES = [
  /server login has been failing/i,
  /server conn crashed/i,
  /pgbouncer cannot connect to server/i,
  /query_wait_timeout/i,
  /no more connections allowed/i,
  /server_connect_timeout/i,
  /database (?:removed|shutting down)/i,
  /pooler is (?:shutting down|paused)/i,
];

/** SQLSTATEs that mean the server is going away or not accepting work. */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);

interface ErrorLike {
  code?: unknown;
  message?: unknown;
}

/** The MemoryError code for a SQLSTATE, the same whichever transport reported it. */
export function sqlstateCode(sqlstate: string): MemoryErrorCode {
  if (UNAVAILABLE_SQLSTATES.has(sqlstate)) return 'BACKEND_UNAVAILABLE';
  switch (sqlstate) {
    case '23505':
      return 'CONFLICT';
    case '57014': // statement timeout
      return 'TIMEOUT';
    case '23503':
      return 'USER_NOT_PROVISIONED';
    case '42501':
      return 'PERMISSION_DENIED';
    case '42883': // undefined function
    case '42P01': // undefined table
      return 'SCHEMA_NOT_MIGRATED';
    case 'LKM01':
      return 'IDENTITY_CONFLICT';
    case 'LKM02':
      return 'ENCRYPTION_KEY_MISMATCH';
    case 'LKM03':
      return 'CONSENT_DENIED';
    case 'LKM04':
      return 'CONSENT_REQUIRED';
    default:
      return 'DATABASE_ERROR';
  }
}

export const HINTS: Partial<Record<MemoryErrorCode, string>> = {
  CONFLICT:
    'a unique constraint refused the write; if it is the identity, was MEMORY_UUID_NAMESPACE changed for this database?',
  TIMEOUT: 'the database took too long; check its load, or raise the statement timeout',
  BACKEND_UNAVAILABLE: 'check that the database is running and DATABASE_URL (or MEMORY_DATA_DIR) is right',
  SCHEMA_NOT_MIGRATED: 'run `lk-memory migrate` against this database',
  PERMISSION_DENIED: 'the database role lacks a privilege on the memory tables or functions; connect as their owner',
  USER_NOT_PROVISIONED: 'start a session for this identity first (startSession provisions the user)',
  ENCRYPTION_KEY_MISMATCH:
    'the settings row holds secrets under a key that MEMORY_ENCRYPTION_KEY (and MEMORY_ENCRYPTION_PREVIOUS_KEYS) cannot read: set the key they were made with, or add it to MEMORY_ENCRYPTION_PREVIOUS_KEYS and run `lk-memory rotate-key`',
  CONSENT_DENIED:
    'the caller asked not to be remembered; nothing is stored for them until they agree again (UserMemory.setConsent("granted"), the remember_me tool, or `lk-memory consent <identity> granted`)',
  CONSENT_REQUIRED:
    'MEMORY_CONSENT_DEFAULT=ask and the caller has not agreed to be remembered yet: ask them, and record their answer (UserMemory.setConsent, the remember_me tool)',
  IDENTITY_CONFLICT:
    'the identity is already stored under another user id: was MEMORY_UUID_NAMESPACE changed for this database?',
};

/** Turn whatever pg or PGlite threw into a MemoryError with a code and a hint. */
export function toMemoryError(error: unknown, where: string): MemoryError {
  if (error instanceof MemoryError) return error;
  const e = (error ?? {}) as ErrorLike;
  const raw = typeof e.message === 'string' ? e.message : String(error);
  let code: MemoryErrorCode = 'DATABASE_ERROR';
  if (e.code === '08P01' && POOLER_UNAVAILABLE_MESSAGES.some((re) => re.test(raw))) {
    code = 'BACKEND_UNAVAILABLE';
  } else if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
    code = sqlstateCode(e.code);
  } else if (TIMEOUT_MESSAGES.some((re) => re.test(raw))) {
    code = 'TIMEOUT';
  } else if (
    (typeof e.code === 'string' && NETWORK_ERRNOS.has(e.code)) ||
    NETWORK_MESSAGES.some((re) => re.test(raw))
  ) {
    code = 'BACKEND_UNAVAILABLE';
  } else if (
    error instanceof AggregateError &&
    error.errors.some((inner) => toMemoryError(inner, where).code === 'BACKEND_UNAVAILABLE')
  ) {
    code = 'BACKEND_UNAVAILABLE';
  }
  const hint = HINTS[code];
  return new MemoryError(code, `${where}: ${raw || 'unknown error'}${hint ? ` (${hint})` : ''}`, { cause: error });
}
