import { MemoryError } from '../errors.js';
import { AgentConfigSchema, type AgentConfig } from './schema.js';
import type { SettingsRow } from '../rpc.js';
import { isEncryptedSecret, type EncryptedSecret } from './cipher.js';

/** A user's settings for one tenant, as stored: secrets stay encrypted until revealed. */
export interface StoredSettings {
  tenant: string;
  config: AgentConfig;
  /** The names of the stored secrets; the values stay encrypted in `encryptedSecrets`. */
  secretNames: string[];
  encryptedSecrets: Record<string, EncryptedSecret>;
  version: number;
  updatedAt: Date;
  /** Where a save landed: the database, or the local journal while the database is unreachable. */
  savedTo?: 'database' | 'journal';
}

export interface SaveSettingsInput {
  /** Default: the store's tenant (MEMORY_TENANT, else "default"). */
  tenant?: string;
  /** Replaces the stored configuration; leave out to keep it. */
  config?: AgentConfig;
  /** Set (or replace) these secrets; others stay. */
  secrets?: Record<string, string>;
  /** Delete these secrets. */
  removeSecrets?: string[];
}

/**
 * Settings as the database returned them, checked again: a row can be changed by other means (an
 * end user's own update under RLS, an operator's SQL), and the worker puts the configuration into
 * its prompt, so what comes back is validated like what goes in.
 */
export function toSettings(row: SettingsRow | null | undefined): StoredSettings | null {
  if (!row) return null;
  const encryptedSecrets: Record<string, EncryptedSecret> = {};
  for (const [name, value] of Object.entries(row.secrets)) {
    if (!isEncryptedSecret(value)) {
      throw new MemoryError(
        'DECRYPTION_FAILED',
        `secret ${name} of tenant ${row.tenant_id} is not in the encrypted format; it was written by something else`,
      );
    }
    encryptedSecrets[name] = value;
  }
  const config = AgentConfigSchema.safeParse(row.config);
  if (!config.success) {
    const issue = config.error.issues[0]!;
    throw new MemoryError(
      'INVALID_SETTINGS',
      `the stored configuration of tenant ${row.tenant_id} is invalid (config.${issue.path.join('.')}: ${issue.message}); it was changed outside this library: save it again with \`lk-memory settings set\``,
    );
  }
  return {
    tenant: row.tenant_id,
    config: config.data,
    secretNames: Object.keys(encryptedSecrets).sort(),
    encryptedSecrets,
    version: row.version,
    updatedAt: new Date(row.updated_at),
  };
}

/** How a secret is shown anywhere a person can read it: never the value. */
export function maskSecret(secret: EncryptedSecret): string {
  return `******** (encrypted, key ${secret.kid})`;
}
