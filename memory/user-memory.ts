import { MAX_LIST_LIMIT, DEFAULTS } from './defaults.js';
import { checkCategory, checkKey, checkLimit, checkQuery, checkValue } from './labels.js';
import { clockTime } from './journal/clock.js';
import { checkExpiresAt } from './lifecycle.js';
import type { MemoryConsent } from './config.js';
import { livePending, mergePending, mergePendingSearch, newestPending, resolvePending, toMemory } from './overlay.js';
import { MemoryError } from './errors.js';
import { rpc, type MemoryRow } from './rpc.js';
import { jsonArg } from './transports/call.js';
import type { SaveSettingsInput, StoredSettings } from './settings/settings.js';
import { RecentWrites, isUnreachable, liveTransport, type StoreState } from './store-state.js';
import type {
  ConsentChange,
  ListOptions,
  Memory,
  MemoryMatch,
  SearchOptions,
  StoreOptions,
  StoreReceipt,
  UserRef,
} from './types.js';
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

  /** This user's pending journal writes, expired stores turned into deletions (see livePending). */
  async #pending() {
    if (!this.#state.journal) return [];
    return livePending(await this.#state.journal.pendingFor(this.user.id), this.#state.lifecycle.retentionDays);
  }

  /**
   * Store or replace a value. Acknowledged only when durable: committed in the database, or, when
   * the database is unreachable, fsynced to the local journal (`savedTo: 'journal'`). Online writes
   * are ordered by the database, so another host's clock cannot make an acknowledged write vanish;
   * a write that did lose to a newer one says so (`applied: false`).
   *
   * The lifecycle: `expiresAt` gives the memory its own expiry; with a cap (MEMORY_MAX_PER_USER)
   * the least recently used memories make room, and the receipt's `evicted` names them. A caller
   * who asked not to be remembered gets CONSENT_DENIED, and with MEMORY_CONSENT_DEFAULT=ask one who
   * has not agreed yet gets CONSENT_REQUIRED: nothing is stored (the database decides, so a write
   * journaled meanwhile is refused when it is replayed).
   */
  async store(category: string, key: string, value: string, options?: StoreOptions): Promise<StoreReceipt> {
    this.checkStore(category, key, value);
    const expiresAt = checkExpiresAt(options);
    const { id: userId, identity } = this.user;
    const { consentDefault, maxPerUser, retentionDays } = this.#state.lifecycle;
    const written = await writeOrJournal(
      this.#state,
      (transport) => {
        const args = {
          p_user_id: userId,
          p_category: category,
          p_key: key,
          p_value: value,
          p_clock: null,
          p_expires_at: expiresAt,
          p_consent: consentDefault,
          p_max_per_user: maxPerUser,
          p_retention_days: retentionDays,
        };
        const combined = this.#state.groupCommit?.stores;
        return combined ? combined.send({ transport, args }) : rpc(transport, 'memory_store', args);
      },
      (clock) => ({
        op: 'store',
        userId,
        identity,
        category,
        key,
        value,
        clock,
        ...(expiresAt === null ? {} : { expiresAt }),
      }),
    );
    const expiry = expiresAt === null ? {} : { expiresAt: new Date(expiresAt) };
    if (written.via === 'journal') {
      this.#state.recent.note(this.#slot(category, key), written.clock);
      return { category, key, updatedAt: clockTime(written.clock), savedTo: 'journal', applied: true, ...expiry };
    }
    const { applied, clock, updated_at: updatedAt, evicted } = written.result;
    this.#state.clock.observe(clock);
    if (applied) this.#state.recent.note(this.#slot(category, key), clock);
    // Embedding happens later, in the background; a failure there never touches this write.
    if (applied) this.#state.embeddings?.touch(userId);
    return {
      category,
      key,
      updatedAt: new Date(updatedAt ?? clockTime(clock)),
      savedTo: 'database',
      applied,
      ...(applied ? expiry : {}),
      ...(evicted && evicted.length > 0 ? { evicted } : {}),
    };
  }

  /**
   * This caller's memory consent as it applies now (the recorded state, else the deployment's
   * MEMORY_CONSENT_DEFAULT), read from the database: a denial made in another session or with
   * `lk-memory consent` counts. One round trip.
   */
  async consent(): Promise<MemoryConsent> {
    const profile = await rpc(liveTransport(this.#state), 'memory_profile', { p_user_id: this.user.id });
    return profile.user?.memory_consent ?? this.#state.lifecycle.consentDefault;
  }

  /**
   * Record this caller's memory consent. `denied` (they asked not to be remembered) erases
   * everything stored for them first, and from then on nothing is stored (CONSENT_DENIED), whatever
   * path the write takes, journal replays included, until they grant it again. `granted` records
   * that they agreed (with MEMORY_CONSENT_DEFAULT=ask, nothing is stored before that). Provisions
   * the user if needed; audited. Needs the database.
   */
  async setConsent(consent: 'granted' | 'denied'): Promise<ConsentChange> {
    if (consent !== 'granted' && consent !== 'denied') {
      throw new MemoryError('INVALID_OPTION', `consent must be "granted" or "denied", not ${JSON.stringify(consent)}`);
    }
    const result = await rpc(liveTransport(this.#state), 'memory_set_consent', {
      p_user_id: this.user.id,
      p_identity: this.user.identity,
      p_consent: consent,
      p_component: this.#state.component,
    });
    return {
      consent: result.consent,
      previous: result.previous,
      at: new Date(result.consent_at),
      erased: result.erased,
    };
  }

  /** The value, or null when nothing is stored under this category and key (pending journal writes included). */
  async retrieve(category: string, key: string): Promise<string | null> {
    checkCategory(category);
    checkKey(key);
    const transport = liveTransport(this.#state);
    const { retentionDays, maxPerUser } = this.#state.lifecycle;
    const args = { p_user_id: this.user.id, p_category: category, p_key: key, p_retention_days: retentionDays };
    const pending = newestPending(await this.#pending(), category, key);
    // With a cap, a read that returns the value counts as a use (least recently used goes first).
    if (!pending) {
      const plain = { ...args, p_touch: maxPerUser !== null };
      const combined = this.#state.groupCommit?.reads;
      return combined ? combined.send({ transport, args: plain }) : rpc(transport, 'memory_retrieve', plain);
    }
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
      p_retention_days: this.#state.lifecycle.retentionDays,
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
        p_retention_days: this.#state.lifecycle.retentionDays,
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
          p_retention_days: this.#state.lifecycle.retentionDays,
        }),
        embeddings.nearest(this.user.id, text, options.category ?? null, pool, this.#state.lifecycle.retentionDays),
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
  async storeMany(
    entries: ReadonlyArray<{ category: string; key: string; value: string; expiresAt?: Date }>,
  ): Promise<number> {
    const given: unknown = entries;
    if (!Array.isArray(given)) throw new MemoryError('INVALID_VALUE', 'storeMany expects an array of memories');
    if (entries.length > MAX_STORE_MANY) {
      throw new MemoryError('INVALID_OPTION', `at most ${MAX_STORE_MANY} memories at once, got ${entries.length}`);
    }
    const seen = new Set<string>();
    const memories = entries.map((entry, i) => {
      let expiresAt: string | null = null;
      try {
        if (typeof (entry as unknown) !== 'object' || (entry as unknown) === null) {
          throw new MemoryError('INVALID_VALUE', 'expected an object {category, key, value}');
        }
        this.checkStore(entry.category, entry.key, entry.value);
        expiresAt = checkExpiresAt(entry);
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
      return {
        category: entry.category,
        key: entry.key,
        value: entry.value,
        ...(expiresAt === null ? {} : { expires_at: expiresAt }),
      };
    });
    if (memories.length === 0) return 0;
    const { consentDefault, maxPerUser, retentionDays } = this.#state.lifecycle;
    const stored = await rpc(liveTransport(this.#state), 'memory_store_many', {
      p_user_id: this.user.id,
      p_memories: jsonArg(memories),
      p_consent: consentDefault,
      p_max_per_user: maxPerUser,
      p_retention_days: retentionDays,
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
