import { createHash } from 'node:crypto';
import pg from 'pg';
import { DEFAULTS } from '../defaults.js';
import { redactUrl } from '../redact.js';
import { callOverSql } from './call.js';
import { toMemoryError } from './pg-errors.js';
import type { Queryable, SqlTransport, TransportKind } from './transport.js';

export interface PostgresTransportOptions {
  /** A libpq connection string, e.g. postgres://user@127.0.0.1:5432/db. */
  connectionString?: string;
  /** Explicit pg settings (used for the embedded socket: host = socket folder). */
  config?: pg.PoolConfig;
  /** Pool size. Job processes need few connections: one voice session rarely has two queries in flight. */
  maxConnections?: number;
  connectTimeoutMs?: number;
  /** Give up on a statement after this long (client side; default 5 s): memory must not make a call late. */
  queryTimeoutMs?: number;
  /** Close a connection idle for this long (default 30 s); 0 keeps idle connections open. */
  idleTimeoutMs?: number;
  kind?: TransportKind;
  location?: string;
  /**
   * Send the store's statements as named prepared statements (parsed and planned once per
   * connection, then only bound and executed). Default: on. A transaction pooler that cannot keep
   * them (PgBouncer before 1.21, or without max_prepared_statements) is detected by its first
   * "prepared statement ... does not exist / already exists" answer: the statement is sent again
   * unnamed, and this transport stops preparing.
   */
  preparedStatements?: boolean;
}

// Every credential of the URL (userinfo password, ?password=, ?sslpassword=, keys and tokens)
// is stripped before the location can reach a log line, an error message or /health.
export { redactUrl } from '../redact.js';

/**
 * Named prepared statements, per transport. PostgreSQL keeps a prepared statement per server
 * connection, and node-postgres prepares a name on each of its connections the first time it sends
 * it there. The name is a hash of the statement's text, never a counter: behind a pooler, a server
 * connection may hold a name another process (or another version of this package) prepared, and
 * the same name must then mean the very same statement.
 */
class Prepared {
  #names = new Map<string, string>();
  on: boolean;
  constructor(on: boolean) {
    this.on = on;
  }
  name(sql: string): string {
    let name = this.#names.get(sql);
    if (!name) {
      name = `lkm_${createHash('sha256').update(sql).digest('hex').slice(0, 32)}`;
      this.#names.set(sql, name);
    }
    return name;
  }
}

// invalid_sql_statement_name (26000): "prepared statement ... does not exist";
// duplicate_prepared_statement (42P05): "... already exists". Both are raised before the
// statement runs (at Parse or Bind), so sending it again unnamed cannot run it twice.
const POOLER_LOST_PREPARED = new Set(['26000', '42P05']);

function wrap(client: pg.ClientBase | pg.Pool, count: () => void, where: string, prepared?: Prepared): Queryable {
  return {
    async query<R extends object>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
      count();
      try {
        if (prepared?.on && params.length > 0) {
          try {
            const result = await client.query({ name: prepared.name(sql), text: sql, values: params as unknown[] });
            return result.rows as R[];
          } catch (error) {
            if (!POOLER_LOST_PREPARED.has((error as { code?: string }).code ?? '')) throw error;
            prepared.on = false;
          }
        }
        const result = await client.query(sql, params as unknown[]);
        return result.rows as R[];
      } catch (error) {
        throw toMemoryError(error, where);
      }
    },
    async exec(script: string): Promise<void> {
      count();
      try {
        // No parameters: pg uses the simple query protocol, which accepts several statements.
        await client.query(script);
      } catch (error) {
        throw toMemoryError(error, where);
      }
    },
  };
}

/** PostgreSQL over the wire with node-postgres: DATABASE_URL, Supabase's direct or pooled URL, or the embedded socket. */
/** A PostgreSQL transport, and whether it still sends named prepared statements. */
export interface PostgresTransport extends SqlTransport {
  readonly preparing: boolean;
}

export function createPostgresTransport(options: PostgresTransportOptions): PostgresTransport {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? DEFAULTS.maxConnections,
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULTS.timeoutMs,
    query_timeout: options.queryTimeoutMs ?? DEFAULTS.timeoutMs,
    idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
    // Let a worker exit without waiting for idle connections.
    allowExitOnIdle: true,
    ...options.config,
  });
  const location = options.location ?? (options.connectionString ? redactUrl(options.connectionString) : 'postgres');
  // An idle connection that dies (server restart) emits 'error' on the pool; unhandled, it would
  // crash the process. The next query gets a fresh connection or a typed error.
  pool.on('error', () => {});

  let statements = 0;
  let closed = false;
  const count = () => {
    statements += 1;
  };
  // Only outside transactions: a failed statement inside one aborts it, so it could not be sent
  // again there.
  const prepared = new Prepared(options.preparedStatements ?? true);
  const direct = wrap(pool, count, location, prepared);

  return {
    kind: options.kind ?? 'postgres',
    location,
    get statementCount() {
      return statements;
    },
    get preparing() {
      return prepared.on;
    },
    query: (sql, params) => direct.query(sql, params),
    exec: (script) => direct.exec(script),
    call: (fn, args, shape) => callOverSql(direct, fn, args, shape),
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw toMemoryError(error, location);
      }
      const tx = wrap(client, count, location);
      // A connection that cannot even roll back is broken: destroy it rather than reuse it.
      let broken: Error | undefined;
      try {
        await tx.exec('begin');
        const result = await fn(tx);
        await tx.exec('commit');
        return result;
      } catch (error) {
        await client.query('rollback').catch((rollbackError: Error) => {
          broken = rollbackError;
        });
        throw error;
      } finally {
        client.release(broken);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
