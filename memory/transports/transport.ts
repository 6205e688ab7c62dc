import type { CallArgs, CallShape } from './call.js';

/** Something that runs SQL: a connection, a pool, or a transaction on one of them. */
export interface Queryable {
  /** Run one parameterised statement and return its rows. One call is one round trip. */
  query<R extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Run a script of several statements (migrations) with the simple query protocol. */
  exec(script: string): Promise<void>;
}

export type TransportKind = 'postgres' | 'embedded' | 'embedded-socket' | 'supabase';

/**
 * The one seam between the store and a database. Every store operation is a single `query` call
 * (one SQL function), which is how "one round trip per operation" is kept on every backend; the
 * statement counter lets tests prove it without timing anything.
 */
export interface SqlTransport extends Queryable {
  readonly kind: TransportKind;
  /**
   * Call one of the schema's functions with named arguments: one statement (or one RPC), one
   * round trip. Store operations use only this, so a transport that cannot run arbitrary SQL
   * (supabase-js) serves them all the same.
   */
  call(fn: string, args: CallArgs, shape: CallShape): Promise<unknown>;
  /** Where the data lives, for messages and `inspect` (never includes a password). */
  readonly location: string;
  /** Statements sent so far through `query` and `exec`. */
  readonly statementCount: number;
  /** Run `fn` in one transaction on one connection. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
