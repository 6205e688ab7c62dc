export { MemoryError, MEMORY_ERROR_CODES, isMemoryError, type MemoryErrorCode } from './errors.js';
export { DNS_NAMESPACE, MAX_IDENTITY_BYTES, identityToUserId, parseNamespace } from './identity.js';
export {
  CATEGORY_PATTERN,
  DEFAULT_MAX_VALUE_BYTES,
  MAX_KEY_CHARS,
  MAX_QUERY_CHARS,
  checkCategory,
  checkKey,
  checkQuery,
  checkValue,
} from './labels.js';
export { loadMemoryConfig, type MemoryConfig, type LifecycleConfig } from './config.js';
export { TOMBSTONE_MAX_AGE_DAYS, type Lifecycle } from './lifecycle.js';
export {
  checkSensitive,
  redactSensitive,
  screenValue,
  piiSettings,
  piiSettingsFromEnv,
  describeSensitive,
  sensitiveKinds,
  isCredentialKey,
  luhnValid,
  cardNetwork,
  PII_POLICIES,
  DEFAULT_PII_POLICY,
  DEFAULT_NATIONAL_ID_PATTERNS,
  US_SSN_PATTERN,
  UK_NINO_PATTERN,
  REDACTION_MARKERS,
  SENSITIVE_KIND_NAMES,
  type PiiPolicy,
  type PiiOptions,
  type PiiSettings,
  type ScreenedValue,
  type SensitiveFinding,
  type SensitiveKind,
} from './pii.js';
export { REDACTED, redactUrl, redactText, secretsOf, isSecretParam } from './redact.js';
export { checkDatabaseUrl, databaseUrlProblem } from './database-url.js';
export { openMemory, type OpenMemoryOptions } from './open.js';
export { type GroupCommit } from './combiner.js';
export { EmbeddingClient, checkEmbeddingAnswer, embeddingText, type EmbeddingOptions } from './embeddings/client.js';
export { HOW_TO_GET_PGVECTOR, type EmbeddingStatus, type VectorAvailability } from './embeddings/embedder.js';
export {
  MemoryStore,
  DEFAULT_MEMORY_LIMIT,
  MAX_MEMORY_LIMIT,
  type BackendInfo,
  type GroupCommitStats,
  type RotationReport,
  type Profile,
  type ErasureReport,
} from './store.js';
export {
  EXPORT_FORMAT,
  EXPORT_VERSION,
  ExportDocumentSchema,
  parseExportDocument,
  type ExportDocument,
  type ExportedMemory,
} from './export-format.js';
export { MEMORY_TABLES, type Diagnostics } from './diagnostics.js';
export {
  SecretCipher,
  parseKey,
  keyId,
  KEY_VARIABLE,
  PREVIOUS_KEYS_VARIABLE,
  type EncryptedSecret,
} from './settings/cipher.js';
export {
  AgentConfigSchema,
  DEFAULT_TENANT,
  FORBIDDEN_NAMES,
  SECRET_NAME_PATTERN,
  TENANT_PATTERN,
  checkConfig,
  checkSecretNames,
  checkSecrets,
  checkTenant,
  isPlainObject,
  type AgentConfig,
} from './settings/schema.js';
export { maskSecret, type StoredSettings, type SaveSettingsInput } from './settings/settings.js';
export { UserMemory } from './user-memory.js';
export { migrate, migrationStatus, loadMigrations, type Migration, type MigrationResult } from './migrations/index.js';
export type { EmbeddedRole } from './embedded/open-embedded.js';
export type {
  User,
  UserRef,
  Memory,
  MemoryMatch,
  SessionStart,
  StartSessionOptions,
  ListOptions,
  SearchOptions,
  StoreReceipt,
  StoreOptions,
  ConsentChange,
  PurgeReport,
  MemoryConsent,
} from './types.js';
export { WriteClock, clockTime, isWriteClock } from './journal/clock.js';
export {
  Journal,
  type JournalOp,
  type ReplayReport,
  type JournalDrop,
  type JournalRemoval,
  type JournalProblem,
  type JournalInspection,
} from './journal/journal.js';
