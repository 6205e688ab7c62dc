import { MemoryError } from '../errors.js';
import type { AgentConfig } from './schema.js';
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

export interface SettingsJson {
  tenant_id: string;
  config: AgentConfig;
  secrets: Record<string, unknown>;
  version: number | string;
  updated_at: string | Date;
}

export function toSettings(json: SettingsJson | null | undefined): StoredSettings | null {
  if (!json) return null;
  const encryptedSecrets: Record<string, EncryptedSecret> = {};
  for (const [name, value] of Object.entries(json.secrets ?? {})) {
    if (!isEncryptedSecret(value)) {
      throw new MemoryError('DECRYPTION_FAILED', `secret ${name} of tenant ${json.tenant_id} is not in the encrypted format; it was written by something else`);
    }
    encryptedSecrets[name] = value;
  }
  return {
    tenant: json.tenant_id,
    config: json.config ?? {},
    secretNames: Object.keys(encryptedSecrets).sort(),
    encryptedSecrets,
    version: Number(json.version),
    updatedAt: new Date(json.updated_at),
  };
}

/** How a secret is shown anywhere a person can read it: never the value. */
export function maskSecret(secret: EncryptedSecret): string {
  return `******** (encrypted, key ${secret.kid})`;
}
