import { MemoryError, isMemoryError } from './errors.js';
import { checkCategory, checkKey, checkLimit, checkValue } from './labels.js';
import { KEY_VARIABLE, secretContext, type EncryptedSecret, type SecretCipher } from './settings/cipher.js';
import { checkConfig, checkSecretNames, checkSecrets, checkTenant } from './settings/schema.js';
import { toSettings, type SaveSettingsInput, type SettingsJson, type StoredSettings } from './settings/settings.js';
import { clockTime, processClock } from './journal/clock.js';
import type { Journal, JournalOp } from './journal/journal.js';
import { jsonArg } from './transports/call.js';
import type { SqlTransport } from './transports/transport.js';
import type { ListOptions, Memory, StoreReceipt, UserRef } from './types.js';

export interface MemoryRow {
  category: string;
  key: string;
  value: string;
  created_at: Date | string;
  updated_at: Date | string;
  /** Write clock (rows from memory_list carry it). */
  clock?: string;
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
  /** Where writes wait while the database is unreachable; undefined: such writes fail instead. */
  readonly journal: Journal | undefined;
  /**
   * Clock of this process's latest acknowledged write per user, category and key (bounded). With
   * the database unreachable, a pending journal entry is served only if no newer write of ours
   * went to the database: otherwise the read fails rather than answering with an older value.
   */
  readonly recent: Map<string, string>;
  closed: boolean;
}

const RECENT_LIMIT = 10_000;

function remember(state: StoreState, slot: string, clock: string): void {
  state.recent.delete(slot);
  state.recent.set(slot, clock);
  if (state.recent.size > RECENT_LIMIT) state.recent.delete(state.recent.keys().next().value!);
}

/** Failures after which a write goes to the journal: the database is not there, or did not answer. */
export function isUnreachable(error: unknown): boolean {
  return isMemoryError(error, 'BACKEND_UNAVAILABLE') || isMemoryError(error, 'TIMEOUT');
}

/** Merge pending journal writes (newest by clock) over what the database returned. */
export function newestPending(ops: readonly JournalOp[], category: string, key: string): JournalOp | undefined {
  let newest: JournalOp | undefined;
  for (const op of ops) {
    if (op.op === 'settings' || op.category !== category || op.key !== key) continue;
    if (!newest || op.clock > newest.clock) newest = op;
  }
  return newest;
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

  /**
   * Store or replace a value. Acknowledged only when durable: committed in the database, or, when
   * the database is unreachable, fsynced to the local journal (`savedTo: 'journal'`).
   */
  async store(category: string, key: string, value: string): Promise<StoreReceipt> {
    this.checkStore(category, key, value);
    const transport = this.#transport();
    const clock = processClock.next();
    try {
      const result = (await transport.call(
        'memory_store',
        { p_user_id: this.user.id, p_category: category, p_key: key, p_value: value, p_clock: clock },
        'value',
      )) as { updated_at?: string | Date };
      this.#state.journal?.kick();
      remember(this.#state, this.#slot(category, key), clock);
      return { category, key, updatedAt: new Date(result.updated_at ?? clockTime(clock)), savedTo: 'database' };
    } catch (error) {
      if (!this.#state.journal || !isUnreachable(error)) throw error;
      await this.#state.journal.append({ op: 'store', userId: this.user.id, identity: this.user.identity, category, key, value, clock });
      remember(this.#state, this.#slot(category, key), clock);
      return { category, key, updatedAt: clockTime(clock), savedTo: 'journal' };
    }
  }

  #slot(category: string, key: string): string {
    return `${this.user.id}\u0000${category}\u0000${key}`;
  }

  /** The value, or null when nothing is stored under this category and key (pending journal writes included). */
  async retrieve(category: string, key: string): Promise<string | null> {
    checkCategory(category);
    checkKey(key);
    const transport = this.#transport();
    const pending = this.#state.journal ? newestPending(await this.#state.journal.pendingFor(this.user.id), category, key) : undefined;
    if (!pending) {
      const value = await transport.call('memory_retrieve', { p_user_id: this.user.id, p_category: category, p_key: key }, 'value');
      return (value as string | null) ?? null;
    }
    let db: { value: string | null; clock: string | null; deleted: string | null };
    try {
      db = (await transport.call('memory_get', { p_user_id: this.user.id, p_category: category, p_key: key }, 'value')) as typeof db;
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      const known = this.#state.recent.get(this.#slot(category, key));
      if (known && known > pending.clock) throw error; // a newer write of ours is in the database
      return pending.op === 'store' ? pending.value : null;
    }
    const dbClock = [db.clock ?? '', db.deleted ?? ''].sort().at(-1)!;
    if (pending.clock > dbClock) return pending.op === 'store' ? pending.value : null;
    return db.value ?? null;
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
    const pending = this.#state.journal ? await this.#state.journal.pendingFor(this.user.id) : [];
    return mergePending(rows, pending, options.category).slice(0, limit).map(toMemory);
  }

  /**
   * Delete one memory; true if it existed. While the database is unreachable the deletion is
   * journaled (durable) and true is returned: it will be applied when the database is back.
   */
  async forget(category: string, key: string): Promise<boolean> {
    checkCategory(category);
    checkKey(key);
    const transport = this.#transport();
    const clock = processClock.next();
    try {
      const deleted = (await transport.call('memory_forget', { p_user_id: this.user.id, p_category: category, p_key: key, p_clock: clock }, 'value')) as {
        existed: boolean;
      };
      this.#state.journal?.kick();
      remember(this.#state, this.#slot(category, key), clock);
      const pending = this.#state.journal ? newestPending(await this.#state.journal.pendingFor(this.user.id), category, key) : undefined;
      return deleted.existed === true || pending?.op === 'store';
    } catch (error) {
      if (!this.#state.journal || !isUnreachable(error)) throw error;
      await this.#state.journal.append({ op: 'forget', userId: this.user.id, identity: this.user.identity, category, key, clock });
      remember(this.#state, this.#slot(category, key), clock);
      return true;
    }
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
    const clock = processClock.next();
    const encrypted: Record<string, EncryptedSecret> = {};
    if (names.length > 0) {
      const cipher = requireCipher(this.#state, 'saving secrets');
      for (const name of names) encrypted[name] = { ...cipher.encrypt(secrets[name]!, secretContext(this.user.id, tenant, name)), at: clock };
    }
    const transport = this.#transport();
    try {
      const saved = (await transport.call(
        'memory_save_settings',
        {
          p_user_id: this.user.id,
          p_tenant_id: tenant,
          p_config: config === undefined ? null : jsonArg(config),
          p_secrets: jsonArg(encrypted),
          p_remove_secrets: jsonArg(remove),
          p_component: this.#state.component,
          p_clock: clock,
        },
        'value',
      )) as SettingsJson;
      this.#state.journal?.kick();
      return { ...toSettings(saved)!, savedTo: 'database' };
    } catch (error) {
      if (!this.#state.journal || !isUnreachable(error)) throw error;
      await this.#state.journal.append({
        op: 'settings',
        userId: this.user.id,
        identity: this.user.identity,
        tenant,
        config: config === undefined ? null : (config as Record<string, unknown>),
        secrets: encrypted,
        removeSecrets: remove,
        clock,
      });
      return {
        tenant,
        config: config ?? {},
        secretNames: names.sort(),
        encryptedSecrets: encrypted,
        version: 0,
        updatedAt: clockTime(clock),
        savedTo: 'journal',
      };
    }
  }

  /**
   * This user's settings for a tenant, secrets still encrypted; null when none were saved. Saves
   * still waiting in the journal are laid over what the database holds.
   */
  async getSettings(tenant?: string): Promise<StoredSettings | null> {
    const t = checkTenant(tenant ?? this.#state.tenant);
    const stored = toSettings((await this.#transport().call('memory_get_settings', { p_user_id: this.user.id, p_tenant_id: t }, 'value')) as SettingsJson | null);
    const pending = this.#state.journal
      ? (await this.#state.journal.pendingFor(this.user.id))
          .filter((op): op is Extract<JournalOp, { op: 'settings' }> => op.op === 'settings' && op.tenant === t)
          .sort((a, b) => (a.clock < b.clock ? -1 : 1))
      : [];
    if (pending.length === 0) return stored;
    let merged: StoredSettings = stored ?? { tenant: t, config: {}, secretNames: [], encryptedSecrets: {}, version: 0, updatedAt: clockTime(pending[0]!.clock) };
    for (const op of pending) {
      const secrets = { ...merged.encryptedSecrets };
      for (const name of op.removeSecrets) if ((secrets[name]?.at ?? '') < op.clock) delete secrets[name];
      for (const [name, secret] of Object.entries(op.secrets)) if ((secrets[name]?.at ?? '') <= (secret.at ?? op.clock)) secrets[name] = secret;
      merged = {
        ...merged,
        config: op.config ? (op.config as StoredSettings['config']) : merged.config,
        encryptedSecrets: secrets,
        secretNames: Object.keys(secrets).sort(),
        updatedAt: clockTime(op.clock),
        savedTo: 'journal',
      };
    }
    return merged;
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

/** Database rows with this user's pending journal writes laid over them, newest first. */
export function mergePending(rows: MemoryRow[], pending: readonly JournalOp[], category?: string): MemoryRow[] {
  if (pending.length === 0) return rows;
  const byKey = new Map<string, MemoryRow & { clock?: string }>();
  for (const row of rows) byKey.set(`${row.category}\u0000${row.key}`, row);
  const overlay: Array<MemoryRow & { clock: string }> = [];
  const ops = [...pending].sort((a, b) => (a.clock < b.clock ? -1 : 1));
  for (const op of ops) {
    if (op.op === 'settings' || (category && op.category !== category)) continue;
    const slot = `${op.category}\u0000${op.key}`;
    const existing = byKey.get(slot) as (MemoryRow & { clock?: string }) | undefined;
    if (existing?.clock && existing.clock >= op.clock) continue;
    if (op.op === 'forget') {
      byKey.delete(slot);
      continue;
    }
    const at = clockTime(op.clock);
    const row = { category: op.category, key: op.key, value: op.value, created_at: at, updated_at: at, clock: op.clock };
    byKey.set(slot, row);
    overlay.push(row);
  }
  const fresh = new Set(overlay.filter((r) => byKey.get(`${r.category}\u0000${r.key}`) === r));
  const newestFirst = [...fresh].sort((a, b) => (a.clock < b.clock ? 1 : -1));
  return [...newestFirst, ...rows.filter((r) => byKey.get(`${r.category}\u0000${r.key}`) === r)];
}
