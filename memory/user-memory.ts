import { MAX_LIST_LIMIT, DEFAULTS } from './defaults.js';
import { checkCategory, checkKey, checkLimit, checkQuery, checkValue } from './labels.js';
import { clockTime } from './journal/clock.js';
import { mergePending, mergePendingSearch, newestPending, resolvePending, toMemory } from './overlay.js';
import { MemoryError } from './errors.js';
import { rpc, type MemoryRow } from './rpc.js';
import { jsonArg } from './transports/call.js';
import type { SaveSettingsInput, StoredSettings } from './settings/settings.js';
import { RecentWrites, isUnreachable, liveTransport, type StoreState } from './store-state.js';
import type { ListOptions, Memory, MemoryMatch, SearchOptions, StoreReceipt, UserRef } from './types.js';
import { getSettings, revealSecrets, saveSettings } from './user-settings.js';
import { writeOrJournal } from './write-or-journal.js';

export { MAX_LIST_LIMIT };

/**
 * Reciprocal rank fusion of the lexical ranking (whose score is already a sum of 1/(k + rank) over
 * its full-text and trigram rankings) with the vector ranking: each memory's score is its lexical
 * score plus 1/(k + its rank by cosine similarity), k = 60 as in memory_search.
 */
export function fuseRankings(
  lexical: ReadonlyArray<MemoryRow & { clock: string; score: number }>,
  nearest: ReadonlyArray<MemoryRow & { clock: string; similarity: number }>,
): Array<MemoryRow & { clock: string; score: number }> {
  const fused = new Map<string, MemoryRow & { clock: string; score: number }>();
  const slot = (row: MemoryRow) => `${row.category}\u0000${row.key}`;
  for (const row of lexical) fused.set(slot(row), { ...row });
  nearest.forEach((row, i) => {
    const bonus = 1 / (DEFAULTS.rrfK + i + 1);
    const known = fused.get(slot(row));
    if (known) known.score += bonus;
    else {
      const { similarity: _similarity, ...memory } = row;
      fused.set(slot(row), { ...memory, score: bonus });
    }
  });
  return [...fused.values()].sort((a, b) => b.score - a.score);
}

/** Most memories one storeMany call takes. */
export const MAX_STORE_MANY = 10_000;

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

  /** Throw the typed error that `store` would throw for this input, without touching the database. */
  checkStore(category: string, key: string, value: string): void {
    checkCategory(category);
    checkKey(key);
    checkValue(value, this.#state.maxValueBytes);
  }

  #slot(category: string, key: string): string {
    return RecentWrites.slot(this.user.id, category, key);
  }

  async #pending() {
    return this.#state.journal ? this.#state.journal.pendingFor(this.user.id) : [];
  }

  /**
   * Store or replace a value. Acknowledged only when durable: committed in the database, or, when
   * the database is unreachable, fsynced to the local journal (`savedTo: 'journal'`). Online writes
   * are ordered by the database, so another host's clock cannot make an acknowledged write vanish;
   * a write that did lose to a newer one says so (`applied: false`).
   */
  async store(category: string, key: string, value: string): Promise<StoreReceipt> {
    this.checkStore(category, key, value);
    const { id: userId, identity } = this.user;
    const written = await writeOrJournal(
      this.#state,
      (transport) =>
        rpc(transport, 'memory_store', {
          p_user_id: userId,
          p_category: category,
          p_key: key,
          p_value: value,
          p_clock: null,
        }),
      (clock) => ({ op: 'store', userId, identity, category, key, value, clock }),
    );
    if (written.via === 'journal') {
      this.#state.recent.note(this.#slot(category, key), written.clock);
      return { category, key, updatedAt: clockTime(written.clock), savedTo: 'journal', applied: true };
    }
    const { applied, clock, updated_at: updatedAt } = written.result;
    this.#state.clock.observe(clock);
    if (applied) this.#state.recent.note(this.#slot(category, key), clock);
    // Embedding happens later, in the background; a failure there never touches this write.
    if (applied) this.#state.embeddings?.touch(userId);
    return { category, key, updatedAt: new Date(updatedAt ?? clockTime(clock)), savedTo: 'database', applied };
  }

  /** The value, or null when nothing is stored under this category and key (pending journal writes included). */
  async retrieve(category: string, key: string): Promise<string | null> {
    checkCategory(category);
    checkKey(key);
    const transport = liveTransport(this.#state);
    const args = { p_user_id: this.user.id, p_category: category, p_key: key };
    const pending = newestPending(await this.#pending(), category, key);
    if (!pending) return rpc(transport, 'memory_retrieve', args);
    try {
      return resolvePending(pending, await rpc(transport, 'memory_get', args));
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      const known = this.#state.recent.get(this.#slot(category, key));
      if (known && known > pending.clock) throw error; // a newer write of ours is in the database
      return pending.op === 'store' ? pending.value : null;
    }
  }

  /** Memories, most recently updated first, optionally of one category. */
  async list(options: ListOptions = {}): Promise<Memory[]> {
    if (options.category !== undefined) checkCategory(options.category);
    const limit = checkLimit(options.limit ?? DEFAULTS.listLimit, 'limit', MAX_LIST_LIMIT);
    const rows = await rpc(liveTransport(this.#state), 'memory_list', {
      p_user_id: this.user.id,
      p_category: options.category ?? null,
      p_limit: limit,
    });
    return mergePending(rows, await this.#pending(), options.category)
      .slice(0, limit)
      .map(toMemory);
  }

  /**
   * This user's memories that match a query, best first, each with its score: full-text search
   * over key and value (any language: no stemming, words as written) fused with trigram similarity
   * (typos, partial words, scripts without spaces). One round trip; the user's pending journal
   * writes are laid over the results. An empty or too long query is INVALID_QUERY; operators of
   * the full-text syntax in it are only punctuation.
   */
  async search(query: string, options: SearchOptions = {}): Promise<MemoryMatch[]> {
    const text = checkQuery(query);
    if (options.category !== undefined) checkCategory(options.category);
    const limit = checkLimit(options.limit ?? DEFAULTS.searchLimit, 'limit', DEFAULTS.searchLimitMax);
    const transport = liveTransport(this.#state);
    const embeddings = this.#state.embeddings;
    let rows: Array<MemoryRow & { clock: string; score: number }>;
    if (!embeddings) {
      rows = await rpc(transport, 'memory_search', {
        p_user_id: this.user.id,
        p_query: text,
        p_category: options.category ?? null,
        p_limit: limit,
      });
    } else {
      // Hybrid: the lexical ranking and, at the same time, the query's vector and this user's
      // nearest memories; fused by reciprocal rank fusion. A query that cannot be embedded in time
      // leaves the lexical ranking alone.
      embeddings.touch(this.user.id); // catch up on memories written while embedding was failing
      const pool = Math.min(Math.max(limit * 3, 30), DEFAULTS.searchLimitMax);
      const [lexical, nearest] = await Promise.all([
        rpc(transport, 'memory_search', {
          p_user_id: this.user.id,
          p_query: text,
          p_category: options.category ?? null,
          p_limit: pool,
        }),
        embeddings.nearest(this.user.id, text, options.category ?? null, pool),
      ]);
      rows = fuseRankings(lexical, nearest ?? []);
    }
    return mergePendingSearch(rows, await this.#pending(), text, options.category)
      .slice(0, limit)
      .map((row) => ({ ...toMemory(row), score: row.score }));
  }

  /**
   * Delete one memory; true if it existed. While the database is unreachable the deletion is
   * journaled (durable) and true is returned: it will be applied when the database is back.
   */
  async forget(category: string, key: string): Promise<boolean> {
    checkCategory(category);
    checkKey(key);
    const { id: userId, identity } = this.user;
    const written = await writeOrJournal(
      this.#state,
      (transport) =>
        rpc(transport, 'memory_forget', { p_user_id: userId, p_category: category, p_key: key, p_clock: null }),
      (clock) => ({ op: 'forget', userId, identity, category, key, clock }),
    );
    if (written.via === 'journal') {
      this.#state.recent.note(this.#slot(category, key), written.clock);
      return true;
    }
    this.#state.clock.observe(written.result.clock);
    this.#state.recent.note(this.#slot(category, key), written.result.clock);
    // A pending store older than this deletion was deleted too, as far as the user can tell.
    return written.result.existed || newestPending(await this.#pending(), category, key)?.op === 'store';
  }

  /**
   * Store many memories at once, all or none: every entry is validated like a store (a bad one is
   * a typed error naming its index, and nothing is sent), then one database call stores them in one
   * transaction. Needs the database (no journal): returns how many were stored.
   */
  async storeMany(entries: ReadonlyArray<{ category: string; key: string; value: string }>): Promise<number> {
    const given: unknown = entries;
    if (!Array.isArray(given)) throw new MemoryError('INVALID_VALUE', 'storeMany expects an array of memories');
    if (entries.length > MAX_STORE_MANY) {
      throw new MemoryError('INVALID_OPTION', `at most ${MAX_STORE_MANY} memories at once, got ${entries.length}`);
    }
    const seen = new Set<string>();
    const memories = entries.map((entry, i) => {
      try {
        if (typeof (entry as unknown) !== 'object' || (entry as unknown) === null) {
          throw new MemoryError('INVALID_VALUE', 'expected an object {category, key, value}');
        }
        this.checkStore(entry.category, entry.key, entry.value);
      } catch (error) {
        if (!(error instanceof MemoryError)) throw error;
        throw new MemoryError(error.code, `memory ${i}: ${error.message}`, { cause: error });
      }
      const slot = RecentWrites.slot(this.user.id, entry.category, entry.key);
      if (seen.has(slot)) {
        throw new MemoryError(
          'INVALID_KEY',
          `memory ${i}: ${entry.category}/${JSON.stringify(entry.key)} appears twice`,
        );
      }
      seen.add(slot);
      return { category: entry.category, key: entry.key, value: entry.value };
    });
    if (memories.length === 0) return 0;
    const stored = await rpc(liveTransport(this.#state), 'memory_store_many', {
      p_user_id: this.user.id,
      p_memories: jsonArg(memories),
    });
    this.#state.embeddings?.touch(this.user.id);
    return stored;
  }

  /** Delete all of this user's memories; returns how many there were. */
  async forgetAll(): Promise<number> {
    return rpc(liveTransport(this.#state), 'memory_forget_all', { p_user_id: this.user.id });
  }

  /** Save this user's agent settings for a tenant (see user-settings.ts). */
  saveSettings(input: SaveSettingsInput): Promise<StoredSettings> {
    return saveSettings(this.#state, this.user, input);
  }

  /** This user's settings for a tenant, secrets still encrypted, pending saves laid over; null when none. */
  getSettings(tenant?: string): Promise<StoredSettings | null> {
    return getSettings(this.#state, this.user, tenant);
  }

  /** Decrypt the secrets of settings read for this user (failures are audited). */
  revealSecrets(settings: StoredSettings): Promise<Record<string, string>> {
    return revealSecrets(this.#state, this.user, settings);
  }
}
