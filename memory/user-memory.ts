import { MemoryError, isMemoryError } from './errors.js';
import { checkCategory, checkKey, checkLimit, checkValue } from './labels.js';
import { KEY_VARIABLE, secretContext, type EncryptedSecret, type SecretCipher } from './settings/cipher.js';
import { checkConfig, checkSecretNames, checkSecrets, checkTenant } from './settings/schema.js';
import { toSettings, type SaveSettingsInput, type SettingsJson, type StoredSettings } from './settings/settings.js';
import { jsonArg } from './transports/call.js';
import type { SqlTransport } from './transports/transport.js';
import type { ListOptions, Memory, StoreReceipt, UserRef } from './types.js';

export interface MemoryRow {
  category: string;
  key: string;
  value: string;
  created_at: Date | string;
  updated_at: Date | string;
}

export function toMemory(row: MemoryRow): Memory {
  return {
    category: row.category,
    key: row.key,
    value: row.value,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** Shared between a store and the handles it gave out, so a closed store refuses every handle. */
export interface StoreState {
  readonly transport: SqlTransport;
  readonly maxValueBytes: number;
  /** Encrypts and decrypts settings secrets; undefined without MEMORY_ENCRYPTION_KEY. */
  readonly cipher: SecretCipher | undefined;
  /** Tenant used when a call names none. */
  readonly tenant: string;
  /** Who is writing, for the audit log: worker, cli, library. */
  readonly component: string;
  closed: boolean;
}

function requireCipher(state: StoreState, action: string): SecretCipher {
  if (!state.cipher) {
    throw new MemoryError('ENCRYPTION_KEY_MISSING', `${action} needs ${KEY_VARIABLE}: set it to 32 random bytes (openssl rand -base64 32)`);
  }
  return state.cipher;
}

export const MAX_LIST_LIMIT = 10_000;

/**
 * One user's memories. The user is fixed when the handle is made and no method takes a user id:
 * there is no argument through which a caller (or a model's tool call) could reach another user.
 * Every method validates first, so bad input never reaches the database, then makes one call.
 */
export class UserMemory {
  readonly user: Readonly<UserRef>;
  readonly #state: StoreState;

  constructor(state: StoreState, user: UserRef) {
    this.#state = state;
    this.user = Object.freeze({ id: user.id, identity: user.identity });
  }

  #transport(): SqlTransport {
    if (this.#state.closed) throw new MemoryError('CLOSED', 'the memory store was closed; open a new one with openMemory()');
    return this.#state.transport;
  }

  /** Throw the typed error that `store` would throw for this input, without touching the database. */
  checkStore(category: string, key: string, value: string): void {
    checkCategory(category);
    checkKey(key);
    checkValue(value, this.#state.maxValueBytes);
  }

  /** Store or replace a value. */
  async store(category: string, key: string, value: string): Promise<StoreReceipt> {
    this.checkStore(category, key, value);
    const updatedAt = (await this.#transport().call(
      'memory_store',
      { p_user_id: this.user.id, p_category: category, p_key: key, p_value: value },
      'value',
    )) as Date | string;
    return { category, key, updatedAt: new Date(updatedAt) };
  }

  /** The value, or null when nothing is stored under this category and key. */
  async retrieve(category: string, key: string): Promise<string | null> {
    checkCategory(category);
    checkKey(key);
    const value = await this.#transport().call('memory_retrieve', { p_user_id: this.user.id, p_category: category, p_key: key }, 'value');
    return (value as string | null) ?? null;
  }

  /** Memories, most recently updated first, optionally of one category. */
  async list(options: ListOptions = {}): Promise<Memory[]> {
    if (options.category !== undefined) checkCategory(options.category);
    const limit = checkLimit(options.limit ?? 100, 'limit', MAX_LIST_LIMIT);
    const rows = (await this.#transport().call(
      'memory_list',
      { p_user_id: this.user.id, p_category: options.category ?? null, p_limit: limit },
      'rows',
    )) as MemoryRow[];
    return rows.map(toMemory);
  }

  /** Delete one memory; true if it existed. */
  async forget(category: string, key: string): Promise<boolean> {
    checkCategory(category);
    checkKey(key);
    const deleted = await this.#transport().call('memory_forget', { p_user_id: this.user.id, p_category: category, p_key: key }, 'value');
    return deleted === true;
  }

  /**
   * Save this user's agent settings for a tenant in one round trip. The upsert names its conflict
   * target, so repeated and concurrent saves update one row. Secrets are encrypted here, before
   * they leave the process.
   */
  async saveSettings(input: SaveSettingsInput): Promise<StoredSettings> {
    const tenant = checkTenant(input.tenant ?? this.#state.tenant);
    const config = input.config === undefined ? undefined : checkConfig(input.config);
    const secrets = checkSecrets(input.secrets ?? {});
    const remove = checkSecretNames(input.removeSecrets ?? []);
    const names = Object.keys(secrets);
    const encrypted: Record<string, EncryptedSecret> = {};
    if (names.length > 0) {
      const cipher = requireCipher(this.#state, 'saving secrets');
      for (const name of names) encrypted[name] = cipher.encrypt(secrets[name]!, secretContext(this.user.id, tenant, name));
    }
    const saved = (await this.#transport().call(
      'memory_save_settings',
      {
        p_user_id: this.user.id,
        p_tenant_id: tenant,
        p_config: config === undefined ? null : jsonArg(config),
        p_secrets: jsonArg(encrypted),
        p_remove_secrets: jsonArg(remove),
        p_component: this.#state.component,
      },
      'value',
    )) as SettingsJson;
    return toSettings(saved)!;
  }

  /** This user's settings for a tenant, secrets still encrypted; null when none were saved. */
  async getSettings(tenant?: string): Promise<StoredSettings | null> {
    const t = checkTenant(tenant ?? this.#state.tenant);
    return toSettings((await this.#transport().call('memory_get_settings', { p_user_id: this.user.id, p_tenant_id: t }, 'value')) as SettingsJson | null);
  }

  /**
   * Decrypt the secrets of settings read for this user. A failure is recorded in the audit log
   * (names and key ids only) and raised as DECRYPTION_FAILED or ENCRYPTION_KEY_MISSING.
   */
  async revealSecrets(settings: StoredSettings): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    try {
      const cipher = requireCipher(this.#state, 'reading secrets');
      for (const name of settings.secretNames) {
        out[name] = cipher.decrypt(settings.encryptedSecrets[name]!, secretContext(this.user.id, settings.tenant, name), name);
      }
      return out;
    } catch (error) {
      await this.#audit(settings.tenant, 'secret.decrypt_failed', {
        code: isMemoryError(error) ? error.code : 'UNKNOWN',
        secrets: settings.secretNames,
        key_ids: [...new Set(Object.values(settings.encryptedSecrets).map((s) => s.kid))],
      });
      throw error;
    }
  }

  /** Best effort: an audit write that fails must not hide the error being reported. */
  async #audit(tenant: string | null, action: string, detail: Record<string, unknown>): Promise<void> {
    await this.#state.transport
      .call(
        'memory_audit',
        { p_user_id: this.user.id, p_tenant_id: tenant, p_action: action, p_component: this.#state.component, p_detail: jsonArg(detail) },
        'value',
      )
      .catch(() => {});
  }

  /** Delete all of this user's memories; returns how many there were. */
  async forgetAll(): Promise<number> {
    return Number(await this.#transport().call('memory_forget_all', { p_user_id: this.user.id }, 'value'));
  }
}
