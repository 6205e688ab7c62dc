import { z } from 'zod';
import { DEFAULTS } from '../defaults.js';
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
    language: z
      .string()
      .regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'must be a language tag such as en or pt-BR')
      .optional(),
    /** LLM model for this user's sessions. */
    model: z.string().min(1).max(128).optional(),
    /** Appended to the agent's instructions for this user. */
    instructions: z.string().max(4000).optional(),
    /** Ids of this user's agents in other systems (name -> id). */
    externalAgentIds: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.string().min(1).max(256)).optional(),
  })
  .strict();

export type AgentConfig = z.infer<typeof AgentConfigSchema>;

/**
 * Secret names: a letter, then letters, digits or _ in either case, up to 64 characters
 * (OPENAI_API_KEY, retell_api_key, call_agent_id). A leading _ is refused, which also refuses
 * __proto__; constructor and prototype are refused by name (they would reach Object.prototype).
 */
export const SECRET_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
export const MAX_SECRET_BYTES = 8 * 1024;
export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const DEFAULT_TENANT = DEFAULTS.tenant;

/** Property names that, written into an ordinary object, change its prototype or shadow its machinery. */
export const FORBIDDEN_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** What a value is, for a message ("a Map", "an array", "null"). */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value !== 'object') return `a ${typeof value}`;
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  const name = proto?.constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/** A plain object: made by {} or JSON.parse (prototype Object.prototype) or Object.create(null). Not a Map, Date, array or class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function requirePlainObject(value: unknown, field: string, what: string): Record<string, unknown> {
  if (!isPlainObject(value)) {
    throw new MemoryError(
      'INVALID_SETTINGS',
      `${field} must be a plain object of ${what} (got ${describeType(value)})`,
    );
  }
  for (const key of Reflect.ownKeys(value)) {
    if (typeof key === 'symbol') throw new MemoryError('INVALID_SETTINGS', `${field} must not have symbol keys`);
    if (FORBIDDEN_NAMES.has(key))
      throw new MemoryError('INVALID_SETTINGS', `${field}: the name ${JSON.stringify(key)} is not allowed`);
  }
  return value;
}

export function checkTenant(tenant: unknown): string {
  if (typeof tenant !== 'string' || !TENANT_PATTERN.test(tenant)) {
    throw new MemoryError(
      'INVALID_TENANT',
      `tenant ${JSON.stringify(tenant)} is invalid: use 1 to 128 letters, digits, _ . : or - (e.g. default, acme)`,
    );
  }
  return tenant;
}

/**
 * The configuration, strictly: a plain object (a Map or a class instance would otherwise pass
 * as an empty object and replace the stored configuration with nothing), nested objects plain too.
 */
export function checkConfig(config: unknown): AgentConfig {
  const plain = requirePlainObject(config, 'config', 'settings such as {"voice":"alloy"}');
  if (plain.externalAgentIds !== undefined)
    requirePlainObject(plain.externalAgentIds, 'config.externalAgentIds', 'name: id strings');
  const parsed = AgentConfigSchema.safeParse(plain);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? `config.${issue.path.join('.')}` : 'config';
    throw new MemoryError('INVALID_SETTINGS', `${where}: ${issue.message}`);
  }
  return parsed.data;
}

function checkSecretName(name: unknown, field: string): string {
  if (typeof name !== 'string')
    throw new MemoryError('INVALID_SETTINGS', `${field}: a secret name must be a string (got ${describeType(name)})`);
  if (!SECRET_NAME_PATTERN.test(name) || FORBIDDEN_NAMES.has(name)) {
    throw new MemoryError(
      'INVALID_SETTINGS',
      `${field}: secret name ${JSON.stringify(name)} is invalid: use a letter, then letters, digits or _ (up to 64), such as OPENAI_API_KEY or retell_api_key`,
    );
  }
  return name;
}

/** Secrets: a plain object of name -> non-empty text up to 8 KiB. Messages never echo a value. */
export function checkSecrets(secrets: unknown): Record<string, string> {
  const plain = requirePlainObject(secrets, 'secrets', 'NAME: value strings');
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(plain)) {
    checkSecretName(name, 'secrets');
    if (typeof value !== 'string') {
      throw new MemoryError('INVALID_SETTINGS', `secrets.${name} must be a string (got ${describeType(value)})`);
    }
    if (value.length === 0 || !value.isWellFormed() || Buffer.byteLength(value) > MAX_SECRET_BYTES) {
      throw new MemoryError(
        'INVALID_SETTINGS',
        `secrets.${name} must be non-empty UTF-8 text of at most ${MAX_SECRET_BYTES} bytes`,
      );
    }
    out[name] = value;
  }
  return out;
}

/** removeSecrets: an array of secret names (a string would otherwise be iterated letter by letter). */
export function checkSecretNames(names: unknown): string[] {
  if (!Array.isArray(names)) {
    throw new MemoryError(
      'INVALID_SETTINGS',
      `removeSecrets must be an array of secret names (got ${describeType(names)})`,
    );
  }
  return names.map((name) => checkSecretName(name, 'removeSecrets'));
}
