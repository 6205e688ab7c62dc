import { MemoryError } from './errors.js';
import { checkCategory, checkKey, checkLimit, checkValue } from './labels.js';
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
  closed: boolean;
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

  /** Delete all of this user's memories; returns how many there were. */
  async forgetAll(): Promise<number> {
    return Number(await this.#transport().call('memory_forget_all', { p_user_id: this.user.id }, 'value'));
  }
}
