import { z } from 'zod';
import { MemoryError } from '../errors.js';

/**
 * A user's agent configuration. Strict: an unknown field is an error, so a typo does not silently
 * save settings the worker then ignores.
 */
export const AgentConfigSchema = z
  .object({
    /** TTS voice name, e.g. "alloy". */
    voice: z.string().min(1).max(64).optional(),
    /** BCP 47 language tag, e.g. "en" or "pt-BR". */
    language: z.string().regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'must be a language tag such as en or pt-BR').optional(),
    /** LLM model for this user's sessions. */
    model: z.string().min(1).max(128).optional(),
    /** Appended to the agent's instructions for this user. */
    instructions: z.string().max(4000).optional(),
    /** Ids of this user's agents in other systems (name -> id). */
    externalAgentIds: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.string().min(1).max(256)).optional(),
  })
  .strict();

export type AgentConfig = z.infer<typeof AgentConfigSchema>;

export const SECRET_NAME_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;
export const MAX_SECRET_BYTES = 8 * 1024;
export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const DEFAULT_TENANT = 'default';

export function checkTenant(tenant: unknown): string {
  if (typeof tenant !== 'string' || !TENANT_PATTERN.test(tenant)) {
    throw new MemoryError('INVALID_TENANT', `tenant ${JSON.stringify(tenant)} is invalid: use 1 to 128 letters, digits, _ . : or - (e.g. default, acme)`);
  }
  return tenant;
}

export function checkConfig(config: unknown): AgentConfig {
  const parsed = AgentConfigSchema.safeParse(config);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? `config.${issue.path.join('.')}` : 'config';
    throw new MemoryError('INVALID_SETTINGS', `${where}: ${issue.message}`);
  }
  return parsed.data;
}

/** Secret names are upper-case identifiers; values non-empty text up to 8 KiB. Messages never echo a value. */
export function checkSecrets(secrets: Record<string, unknown>): Record<string, string> {
  for (const [name, value] of Object.entries(secrets)) {
    if (!SECRET_NAME_PATTERN.test(name)) {
      throw new MemoryError('INVALID_SETTINGS', `secret name ${JSON.stringify(name)} is invalid: use an upper-case identifier such as OPENAI_API_KEY`);
    }
    if (typeof value !== 'string' || value.length === 0 || !value.isWellFormed() || Buffer.byteLength(value) > MAX_SECRET_BYTES) {
      throw new MemoryError('INVALID_SETTINGS', `secret ${name} must be non-empty UTF-8 text of at most ${MAX_SECRET_BYTES} bytes`);
    }
  }
  return secrets as Record<string, string>;
}

export function checkSecretNames(names: readonly unknown[]): string[] {
  for (const name of names) {
    if (typeof name !== 'string' || !SECRET_NAME_PATTERN.test(name)) {
      throw new MemoryError('INVALID_SETTINGS', `secret name ${JSON.stringify(name)} is invalid: use an upper-case identifier such as OPENAI_API_KEY`);
    }
  }
  return names as string[];
}
