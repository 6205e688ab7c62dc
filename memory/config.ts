import { z } from 'zod';
import { MemoryError } from './errors.js';
import { DNS_NAMESPACE } from './identity.js';
import { DEFAULT_MAX_VALUE_BYTES } from './labels.js';

/** An unset variable and an empty one mean the same: use the default. */
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (value === '' ? undefined : value), schema.optional());

const MemoryEnvSchema = z.object({
  DATABASE_URL: optional(
    z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// connection string'),
  ),
  MEMORY_DATA_DIR: optional(z.string()),
  MEMORY_UUID_NAMESPACE: optional(z.uuid({ message: 'must be a UUID, e.g. ' + DNS_NAMESPACE })),
  MEMORY_MAX_VALUE_BYTES: optional(z.coerce.number().int().min(1).max(1024 * 1024)),
});

export interface MemoryConfig {
  /** Set: PostgreSQL. Unset: embedded PGlite in dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  namespace: string;
  maxValueBytes: number;
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
    dataDir: vars.MEMORY_DATA_DIR ?? '.data',
    namespace: (vars.MEMORY_UUID_NAMESPACE ?? DNS_NAMESPACE).toLowerCase(),
    maxValueBytes: vars.MEMORY_MAX_VALUE_BYTES ?? DEFAULT_MAX_VALUE_BYTES,
  };
}
