import { MemoryError, isMemoryError } from './errors.js';
import type { WriteClock } from './journal/clock.js';
import type { Embedder } from './embeddings/embedder.js';
import type { Journal } from './journal/journal.js';
import type { Lifecycle } from './lifecycle.js';
import type { GroupCommitters } from './group-commit.js';
import type { SecretCipher } from './settings/cipher.js';
import type { RpcTransport } from './transports/transport.js';

/**
 * Clock of this process's latest acknowledged write per user, category and key (bounded). With the
 * database unreachable, a pending journal entry is served only if no newer write of ours went to
 * the database: otherwise the read fails rather than answer with an older value.
 */
export class RecentWrites {
  static readonly LIMIT = 10_000;
  readonly #clocks = new Map<string, string>();

  static slot(userId: string, category: string, key: string): string {
    return `${userId}\u0000${category}\u0000${key}`;
  }

  note(slot: string, clock: string): void {
    this.#clocks.delete(slot);
    this.#clocks.set(slot, clock);
    if (this.#clocks.size > RecentWrites.LIMIT) this.#clocks.delete(this.#clocks.keys().next().value!);
  }

  get(slot: string): string | undefined {
    return this.#clocks.get(slot);
  }
}

/** Shared between a store and the handles it gave out, so a closed store refuses every handle. */
export interface StoreState {
  readonly transport: RpcTransport;
  readonly maxValueBytes: number;
  /** Encrypts and decrypts settings secrets; undefined without MEMORY_ENCRYPTION_KEY. */
  readonly cipher: SecretCipher | undefined;
  /** Tenant used when a call names none. */
  readonly tenant: string;
  /** Who is writing, for the audit log: worker, cli, library. */
  readonly component: string;
  /** Where writes wait while the database is unreachable; undefined: such writes fail instead. */
  readonly journal: Journal | undefined;
  /** Clocks for journaled writes: never behind a clock this process has seen from the database. */
  readonly clock: WriteClock;
  readonly recent: RecentWrites;
  /** Optional embeddings (MEMORY_EMBEDDING_MODEL): background embedding and vector search. */
  readonly embeddings?: Embedder;
  /** Consent default, retention and cap (MEMORY_CONSENT_DEFAULT, MEMORY_RETENTION_DAYS, MEMORY_MAX_PER_USER). */
  readonly lifecycle: Lifecycle;
  /** Group commit of online stores and plain reads (openMemory's `groupCommit`); undefined: every call alone. */
  readonly groupCommit: GroupCommitters | undefined;
  closed: boolean;
}

/** The transport, unless the store was closed. */
export function liveTransport(state: StoreState): RpcTransport {
  if (state.closed) throw new MemoryError('CLOSED', 'the memory store was closed; open a new one with openMemory()');
  return state.transport;
}

/** Failures after which a write goes to the journal: the database is not there, or did not answer. */
export function isUnreachable(error: unknown): boolean {
  return isMemoryError(error, 'BACKEND_UNAVAILABLE') || isMemoryError(error, 'TIMEOUT');
}
