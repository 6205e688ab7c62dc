import { DEFAULTS } from '../defaults.js';
import { MemoryError, isMemoryError } from '../errors.js';
import { rpc, type RpcResult } from '../rpc.js';
import { jsonArg } from '../transports/call.js';
import type { RpcTransport } from '../transports/transport.js';
import { EmbeddingClient, embeddingText, type EmbeddingOptions } from './client.js';

/** Whether vectors can be used on this database, and why not. */
export interface VectorAvailability {
  /** pgvector enabled and public.memory_embeddings present. */
  available: boolean;
  /** pgvector can be installed here (pg_available_extensions lists it). */
  installable: boolean;
  /** The enabled pgvector's version. */
  version?: string;
  /** Why vectors are not available, and how to get them. */
  reason?: string;
}

/** What `store.embeddingStatus()` reports. */
export interface EmbeddingStatus {
  configured: boolean;
  model?: string;
  endpoint?: string;
  vectors?: VectorAvailability;
  /** Users with memories waiting to be embedded (in this process). */
  pendingUsers: number;
  /** Memories embedded by this process. */
  embedded: number;
  /** Background failures so far (each is retried). */
  failures: number;
  lastError?: string;
}

/** A vector match: a memory row and its cosine similarity. */
export type VectorMatch = RpcResult<'memory_embeddings_search'>[number];

export const HOW_TO_GET_PGVECTOR =
  'Supabase: enable the "vector" extension (Database > Extensions); PostgreSQL: install pgvector ' +
  '(Debian/Ubuntu with the PGDG repository: apt install postgresql-<version>-pgvector; or build it from ' +
  'https://github.com/pgvector/pgvector); the embedded database: npm install @electric-sql/pglite-pgvector. ' +
  "Then apply the embeddings migration and those after it again (they are idempotent): delete from public.memory_schema_migrations where version >= '20261206100000'; and run `lk-memory migrate`";

/** Read what the database says about vectors (one call). */
export async function readVectorAvailability(transport: RpcTransport): Promise<VectorAvailability> {
  const status = await rpc(transport, 'memory_embedding_status', {});
  if (status.extension_version && status.table) {
    return { available: true, installable: true, version: status.extension_version };
  }
  return {
    available: false,
    installable: status.installable,
    reason: status.installable
      ? `pgvector is installable here but ${status.extension_version ? 'the table public.memory_embeddings is missing' : 'not enabled'}. ${HOW_TO_GET_PGVECTOR}`
      : `pgvector is not available on this database. ${HOW_TO_GET_PGVECTOR}`,
  };
}

/** The query-vector cache: small, so that a repeated turn text or query is embedded once. */
class Lru<V> {
  readonly #map = new Map<string, V>();
  constructor(readonly limit: number) {}
  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }
  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.limit) this.#map.delete(this.#map.keys().next().value!);
  }
}

/**
 * Embeds memories in the background and finds a user's nearest memories by vector.
 *
 * Writes never wait for it: a successful store only marks its user (touch), and a background loop
 * asks the database which of that user's memories have no current vector (missing, or made from
 * another value: a content hash), embeds them in batches and stores the vectors. Any failure (the
 * endpoint down, a refused answer, the database unreachable) keeps the user marked and retries
 * later with backoff; the memory is still there, and found lexically, meanwhile. Vectors of
 * forgotten memories go with them (a cascading foreign key).
 */
export class Embedder {
  readonly client: EmbeddingClient;
  readonly #transport: RpcTransport;
  readonly #options: EmbeddingOptions;
  /** Users with memories to embed, each with a mark that every touch changes. */
  readonly #dirty = new Map<string, number>();
  readonly #queries = new Lru<number[]>(256);
  readonly #abort = new AbortController();
  #availability: Promise<VectorAvailability> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #delay: number;
  #closed = false;
  #embedded = 0;
  #failures = 0;
  #lastError: string | undefined;
  #idle: Array<() => void> = [];

  constructor(transport: RpcTransport, options: EmbeddingOptions & { baseURL: string }) {
    this.#transport = transport;
    this.#options = options;
    this.client = new EmbeddingClient(options);
    this.#delay = this.#minDelay;
  }

  get model(): string {
    return this.client.model;
  }

  get #minDelay(): number {
    return this.#options.retry?.minMs ?? DEFAULTS.embeddingRetryMinMs;
  }

  get #maxDelay(): number {
    return this.#options.retry?.maxMs ?? DEFAULTS.embeddingRetryMaxMs;
  }

  /**
   * Whether this database has vectors: asked once (again after a failure to ask, e.g. the database
   * was unreachable).
   */
  availability(): Promise<VectorAvailability> {
    this.#availability ??= readVectorAvailability(this.#transport).catch((error: unknown) => {
      this.#availability = undefined;
      const reason = isMemoryError(error, 'SCHEMA_NOT_MIGRATED')
        ? 'the schema has no embeddings migration yet: run `lk-memory migrate`'
        : `could not ask the database (${isMemoryError(error) ? error.code : 'error'}: ${(error as Error).message})`;
      return { available: false, installable: false, reason };
    });
    return this.#availability;
  }

  /** Embed this user's memories that have no current vector, soon, in the background. Never throws. */
  touch(userId: string): void {
    if (this.#closed) return;
    this.#dirty.set(userId, (this.#dirty.get(userId) ?? 0) + 1);
    if (!this.#running && !this.#timer) this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#run().finally(() => {
        this.#running = undefined;
        if (this.#dirty.size === 0) this.#settle();
      });
    }, ms);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const availability = await this.availability();
    if (!availability.available) {
      if (this.#availability === undefined) {
        // Could not ask (the database is unreachable): ask again later.
        this.#schedule(this.#delay);
        this.#delay = Math.min(this.#delay * 2, this.#maxDelay);
        return;
      }
      // No vectors on this database: search stays lexical. (The doctor and embeddingStatus() say why.)
      this.#dirty.clear();
      return;
    }
    for (const [userId, mark] of [...this.#dirty]) {
      if (this.#closed) return;
      try {
        await this.#embedUser(userId);
        // Touched again meanwhile (a write after our last look): stay marked for another pass.
        if (this.#dirty.get(userId) === mark) this.#dirty.delete(userId);
        this.#delay = this.#minDelay;
      } catch (error) {
        if (this.#closed) return;
        this.#failures += 1;
        const failure = isMemoryError(error)
          ? error
          : new MemoryError('EMBEDDING_FAILED', `embedding failed: ${String(error)}`, { cause: error });
        this.#lastError = `${failure.code}: ${failure.message}`;
        try {
          this.#options.onError?.(failure);
        } catch {
          // a logger's failure is not ours to handle
        }
        this.#schedule(this.#delay);
        this.#delay = Math.min(this.#delay * 2, this.#maxDelay);
        return;
      }
    }
    if (this.#dirty.size > 0) this.#schedule(0);
  }

  async #embedUser(userId: string): Promise<void> {
    const batch = this.#options.batchSize ?? DEFAULTS.embeddingBatch;
    const timeout = this.#options.requestTimeoutMs ?? DEFAULTS.embeddingRequestTimeoutMs;
    // Bounded, so that a database that keeps refusing our vectors cannot keep us here.
    for (let round = 0; round < 1000; round += 1) {
      const rows = await rpc(this.#transport, 'memory_embeddings_pending', {
        p_user_id: userId,
        p_model: this.model,
        p_limit: batch,
      });
      if (rows.length === 0) return;
      const vectors = await this.client.embed(
        rows.map((r) => embeddingText(r.key, r.value)),
        timeout,
        this.#abort.signal,
      );
      const stored = await rpc(this.#transport, 'memory_embeddings_put', {
        p_user_id: userId,
        p_model: this.model,
        p_items: jsonArg(
          rows.map((r, i) => ({
            category: r.category,
            key: r.key,
            content_hash: r.content_hash,
            embedding: vectors[i],
          })),
        ),
      });
      this.#embedded += stored;
      if (rows.length < batch) return;
    }
  }

  /**
   * This user's memories nearest to `query`, best first, at least minSimilarity; undefined when
   * vectors are unavailable or the query could not be embedded in time (search is then lexical).
   * Never throws. Expired memories (their own expiry, or older than `retentionDays`) are not matches.
   */
  async nearest(
    userId: string,
    query: string,
    category: string | null,
    limit: number,
    retentionDays: number | null = null,
  ): Promise<VectorMatch[] | undefined> {
    try {
      if (!(await this.availability()).available) return undefined;
      const vector = await this.queryVector(query);
      const rows = await rpc(this.#transport, 'memory_embeddings_search', {
        p_user_id: userId,
        p_model: this.model,
        p_embedding: `[${vector.join(',')}]`,
        p_category: category,
        p_limit: limit,
        p_retention_days: retentionDays,
      });
      const floor = this.#options.minSimilarity ?? DEFAULTS.embeddingMinSimilarity;
      return rows.filter((r) => r.similarity >= floor);
    } catch (error) {
      this.#lastError = isMemoryError(error) ? `${error.code}: ${error.message}` : String(error);
      return undefined;
    }
  }

  /** The query's vector (cached), within the query timeout. */
  async queryVector(query: string): Promise<number[]> {
    const text = query.slice(0, DEFAULTS.embeddingMaxChars);
    const cached = this.#queries.get(text);
    if (cached) return cached;
    const [vector] = await this.client.embed(
      [text],
      this.#options.queryTimeoutMs ?? DEFAULTS.embeddingQueryTimeoutMs,
      this.#abort.signal,
    );
    this.#queries.set(text, vector!);
    return vector!;
  }

  /** Resolves when nothing is waiting to be embedded (or the embedder is closed). For tests and tools. */
  settled(): Promise<void> {
    if (this.#closed || (this.#dirty.size === 0 && !this.#running && !this.#timer)) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #settle(): void {
    const waiting = this.#idle;
    this.#idle = [];
    for (const resolve of waiting) resolve();
  }

  async status(): Promise<EmbeddingStatus> {
    return {
      configured: true,
      model: this.model,
      endpoint: this.client.endpoint,
      vectors: await this.availability(),
      pendingUsers: this.#dirty.size,
      embedded: this.#embedded,
      failures: this.#failures,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }

  /** Stop: cancel the request in flight and wait for the loop to end. Pending users are picked up by the next process. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort.abort();
    await this.#running;
    this.#settle();
  }
}
