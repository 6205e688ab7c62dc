import { z } from 'zod';
import { MemoryError } from './errors.js';

/**
 * The export document (docs/export-format.md): everything stored about one user, as one JSON
 * object. Defined once, here: exportUser builds it and checks it against this schema before
 * handing it out, and `lk-memory import` reads it back through parseExportDocument, where it is
 * untrusted input (a file anyone could have edited): unknown fields, another format or version,
 * wrong types and prototype keys are refused before anything is written.
 *
 * Version 1. A later version that changes a field's meaning gets a new number; this code reads
 * version 1 only and says so.
 */
export const EXPORT_FORMAT = 'livekit-user-memory/export';
export const EXPORT_VERSION = 1;

/** Times are ISO 8601 in UTC with milliseconds, as Date.prototype.toISOString writes them. */
const Time = z.iso.datetime();
const Json = z.record(z.string(), z.unknown());
/** Secrets appear only masked: their names, and which key encrypted them. */
const Masked = z.record(z.string(), z.string());

export const ExportedMemorySchema = z.strictObject({
  category: z.string(),
  key: z.string(),
  value: z.string(),
  createdAt: Time,
  updatedAt: Time,
  /** When the memory expires (and stops being served); null: it does not. */
  expiresAt: Time.nullable(),
});

const PendingSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('store'), category: z.string(), key: z.string(), value: z.string(), at: Time }),
  z.strictObject({ op: z.literal('forget'), category: z.string(), key: z.string(), at: Time }),
  z.strictObject({
    op: z.literal('settings'),
    tenant: z.string(),
    config: Json.nullable(),
    secrets: Masked,
    removeSecrets: z.array(z.string()),
    at: Time,
  }),
]);

export const ExportDocumentSchema = z.strictObject({
  format: z.literal(EXPORT_FORMAT),
  version: z.literal(EXPORT_VERSION),
  exportedAt: Time,
  identity: z.string().min(1),
  userId: z.uuid(),
  /** The UUIDv5 namespace the user id was derived with. */
  namespace: z.uuid(),
  /** The user row; null when the database has none (only pending journal writes or audit entries). */
  user: z
    .strictObject({
      createdAt: Time,
      lastSeenAt: Time,
      sessionCount: z.number().int().nonnegative(),
      /** The linked Supabase Auth user, or null. */
      authUserId: z.string().nullable(),
    })
    .nullable(),
  /** 'granted' | 'denied' | null (never said: the deployment's default applies), and when it was said. */
  consent: z.strictObject({ state: z.enum(['granted', 'denied']).nullable(), at: Time.nullable() }),
  /** Every stored memory, expired ones included (they are stored until purged). */
  memories: z.array(ExportedMemorySchema),
  /** Deletions the database remembers (forget's tombstones): which key, and when. */
  deletions: z.array(z.strictObject({ category: z.string(), key: z.string(), at: Time })),
  /** Settings per tenant: the configuration, and secrets masked. */
  settings: z.array(
    z.strictObject({
      tenant: z.string(),
      config: Json,
      secrets: Masked,
      version: z.number().int(),
      updatedAt: Time,
    }),
  ),
  /** Every audit entry about the user, oldest first. */
  audit: z.array(
    z.strictObject({
      at: Time,
      action: z.string(),
      component: z.string(),
      tenant: z.string().nullable(),
      detail: Json,
    }),
  ),
  /** Writes of the user still waiting in this host's journal (not yet in the database). */
  pendingJournal: z.array(PendingSchema),
});

export type ExportDocument = z.infer<typeof ExportDocumentSchema>;
export type ExportedMemory = z.infer<typeof ExportedMemorySchema>;

class ForbiddenKey extends Error {}

/**
 * JSON text to a value, refusing `__proto__` keys (an own "__proto__" becomes a prototype when the
 * object is copied).
 */
export function parseUntrustedJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text, (name, value: unknown) => {
      if (name === '__proto__') throw new ForbiddenKey();
      return value;
    });
  } catch (error) {
    throw new MemoryError(
      'INVALID_VALUE',
      error instanceof ForbiddenKey
        ? `${what} holds a "__proto__" key: refused`
        : `${what} is not valid JSON: ${(error as Error).message}`,
    );
  }
}

/** An export document read back (import): checked whole, or INVALID_VALUE naming the first problem. */
export function parseExportDocument(value: unknown, what: string): ExportDocument {
  const header = value as { format?: unknown; version?: unknown };
  if (header.format !== EXPORT_FORMAT) {
    throw new MemoryError(
      'INVALID_VALUE',
      `${what} is not a livekit-user-memory export (its "format" is ${JSON.stringify(header.format) ?? 'missing'}, expected ${JSON.stringify(EXPORT_FORMAT)})`,
    );
  }
  if (header.version !== EXPORT_VERSION) {
    throw new MemoryError(
      'INVALID_VALUE',
      `${what} is an export of version ${JSON.stringify(header.version)}; this version of livekit-user-memory reads version ${EXPORT_VERSION}: use the version that wrote it, or a newer one`,
    );
  }
  const parsed = ExportDocumentSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const keys =
      'keys' in issue && Array.isArray(issue.keys) ? ` (${issue.keys.map((k) => JSON.stringify(k)).join(', ')})` : '';
    throw new MemoryError(
      'INVALID_VALUE',
      `${what}: ${issue.path.join('.') || 'document'}: ${issue.message}${keys}; nothing was written`,
    );
  }
  return parsed.data;
}
