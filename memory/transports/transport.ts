import { MemoryError } from '../errors.js';
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
 * What the store needs, and all a Supabase project gives a server holding the service_role key:
 * calls to the schema's functions. Every store operation is one call (one SQL function), which is
 * how "one round trip per operation" holds on every backend; the statement counter lets tests
 * prove it without timing anything.
 */
export interface RpcTransport {
  readonly kind: TransportKind;
  /** Call one of the schema's functions with named arguments: one statement or one RPC. */
  call(fn: string, args: CallArgs, shape: CallShape): Promise<unknown>;
  /** Where the data lives, for messages and `inspect` (never includes a credential). */
  readonly location: string;
  /** Statements (or RPCs) sent so far. */
  readonly statementCount: number;
  close(): Promise<void>;
}

/**
 * A transport that also runs arbitrary SQL: migrations, diagnostics of an unmigrated database and
 * the project's own tests need it. PostgreSQL and the embedded database are such transports.
 */
export interface SqlTransport extends RpcTransport, Queryable {
  /** Run `fn` in one transaction on one connection. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

export function isSqlTransport(transport: RpcTransport): transport is SqlTransport {
  const candidate = transport as Partial<SqlTransport>;
  return (
    typeof candidate.query === 'function' &&
    typeof candidate.exec === 'function' &&
    typeof candidate.transaction === 'function'
  );
}

/** The SQL side of a transport, or a typed error saying how to get one (Supabase: DATABASE_URL). */
export function requireSql(transport: RpcTransport, action: string): SqlTransport {
  if (isSqlTransport(transport)) return transport;
  throw new MemoryError(
    'INVALID_OPTION',
    `${action} needs SQL access, which the ${transport.kind} transport does not give: set DATABASE_URL to the project's connection string (Supabase: Project Settings > Database) and run it again`,
  );
}
