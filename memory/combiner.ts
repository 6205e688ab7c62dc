import { MemoryError, isMemoryError } from './errors.js';
import { isUnreachable } from './store-state.js';

/**
 * A combined call the server refused as a whole: it answered with a SQLSTATE (a caller's consent,
 * a user erased meanwhile, a deadlock, a lock wait over the batch's lock_timeout), so the
 * statement rolled back and nothing of it was written; each item is then sent again alone to get
 * exactly its own answer. Anything else (no answer, an answer we cannot read, an error without a
 * SQLSTATE such as a proxy's) may have taken effect: each item gets the error, as alone. When the
 * database did not answer, items still waiting for the same group get the error at once rather
 * than wait their turn for a database that is not there (a store then goes to the journal).
 */
function refusedWhole(error: unknown): boolean {
  if (isUnreachable(error) || !isMemoryError(error)) return false;
  const cause = error.cause as { code?: unknown } | undefined;
  return typeof cause?.code === 'string' && /^[0-9A-Z]{5}$/.test(cause.code);
}

/**
 * Group commit (openMemory's `groupCommit`): at most `storesInFlight` store calls and
 * `readsInFlight` read calls in flight per process; what arrives while that many are out waits,
 * and everything waiting goes in the next call, together, up to `maxBatch`. What finds a free slot
 * goes at once, alone: at low load nothing waits and nothing changes.
 */
export interface GroupCommit {
  storesInFlight: number;
  readsInFlight: number;
  maxBatch: number;
}

/** One kind of call's limits. */
export interface CombinerLimits {
  inFlight: number;
  maxBatch: number;
}

/** The options, checked: a typed error naming the bad one, before anything is opened. */
export function checkGroupCommit(options: GroupCommit): GroupCommit {
  for (const name of ['storesInFlight', 'readsInFlight'] as const) {
    const value = options[name];
    if (!Number.isInteger(value) || value < 1 || value > 1000) {
      throw new MemoryError(
        'INVALID_OPTION',
        `groupCommit.${name} must be a whole number from 1 to 1000, not ${String(value)}`,
      );
    }
  }
  const { maxBatch } = options;
  if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > 1000) {
    throw new MemoryError(
      'INVALID_OPTION',
      `groupCommit.maxBatch must be a whole number from 1 to 1000, not ${String(maxBatch)}`,
    );
  }
  return { storesInFlight: options.storesInFlight, readsInFlight: options.readsInFlight, maxBatch };
}

/** How one kind of call is sent alone and together. */
export interface CombinedCall<T, R> {
  /** Items with the same group go in one call (same transport, same deployment arguments). */
  group(item: T): unknown;
  one(item: T): Promise<R>;
  /** One answer per item, in the items' order (checked by the caller of `many`, see below). */
  many(items: T[]): Promise<R[]>;
  /** Items resent alone after a refusal keep their order within a slot (the same user and key). */
  slot(item: T): string;
}

interface Waiting<T, R> {
  item: T;
  resolve: (answer: R) => void;
  reject: (error: unknown) => void;
}

/**
 * Calls of one kind, combined while the database is busy. Each caller's promise settles with its
 * own item's answer (or error), and only when the call that carried it has finished: a store is
 * acknowledged only once its transaction committed, as alone.
 */
export class Combiner<T, R> {
  readonly #options: CombinerLimits;
  readonly #call: CombinedCall<T, R>;
  #inFlight = 0;
  #waiting: Array<Waiting<T, R>> = [];
  /**
   * Items sent, the database calls that carried them, and combined calls the server refused as a
   * whole (their items then went alone, each counted as a call). Tests and the benchmark read these.
   */
  items = 0;
  calls = 0;
  refused = 0;

  constructor(options: CombinerLimits, call: CombinedCall<T, R>) {
    this.#options = { ...options };
    this.#call = call;
  }

  send(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#inFlight < this.#options.inFlight && this.#waiting.length > 0) {
      const group = this.#call.group(this.#waiting[0]!.item);
      const batch: Array<Waiting<T, R>> = [];
      const rest: Array<Waiting<T, R>> = [];
      for (const entry of this.#waiting) {
        if (batch.length < this.#options.maxBatch && this.#call.group(entry.item) === group) batch.push(entry);
        else rest.push(entry);
      }
      this.#waiting = rest;
      this.#inFlight += 1;
      void this.#send(batch).finally(() => {
        this.#inFlight -= 1;
        this.#drain();
      });
    }
  }

  /** Resolves once nothing is waiting and nothing is in flight (close() waits for this). */
  async idle(): Promise<void> {
    while (this.#inFlight > 0 || this.#waiting.length > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  #failWaiting(group: unknown, error: unknown): void {
    const failed = this.#waiting.filter((entry) => this.#call.group(entry.item) === group);
    if (failed.length === 0) return;
    this.#waiting = this.#waiting.filter((entry) => this.#call.group(entry.item) !== group);
    for (const entry of failed) entry.reject(error);
  }

  async #send(batch: Array<Waiting<T, R>>): Promise<void> {
    this.calls += 1;
    this.items += batch.length;
    if (batch.length === 1) return this.#alone(batch[0]!);
    let answers: R[];
    try {
      answers = await this.#call.many(batch.map((entry) => entry.item));
      if (answers.length !== batch.length) {
        throw new MemoryError(
          'INVALID_RESPONSE',
          `the database answered ${answers.length} items for ${batch.length}: the database schema is not the one this version expects; run \`lk-memory migrate\``,
        );
      }
    } catch (error) {
      if (!refusedWhole(error)) {
        for (const entry of batch) entry.reject(error);
        if (isUnreachable(error)) this.#failWaiting(this.#call.group(batch[0]!.item), error);
        return;
      }
      this.refused += 1;
      this.calls += batch.length;
      // Each alone; two of the same slot one after the other, in the order they were sent.
      const slots = new Map<string, Array<Waiting<T, R>>>();
      for (const entry of batch) {
        const slot = this.#call.slot(entry.item);
        const entries = slots.get(slot);
        if (entries) entries.push(entry);
        else slots.set(slot, [entry]);
      }
      await Promise.all(
        [...slots.values()].map(async (entries) => {
          for (const entry of entries) await this.#alone(entry);
        }),
      );
      return;
    }
    batch.forEach((entry, i) => entry.resolve(answers[i]!));
  }

  async #alone(entry: Waiting<T, R>): Promise<void> {
    try {
      entry.resolve(await this.#call.one(entry.item));
    } catch (error) {
      entry.reject(error);
      if (isUnreachable(error)) this.#failWaiting(this.#call.group(entry.item), error);
    }
  }
}
