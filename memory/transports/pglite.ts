import type { PGlite, Transaction } from '@electric-sql/pglite';
import type { Gate } from '../embedded/gate.js';
import { callOverSql } from './call.js';
import { toMemoryError } from './pg-errors.js';
import type { Queryable, SqlTransport } from './transport.js';

function wrap(db: PGlite | Transaction, count: () => void, where: string): Queryable {
  return {
    async query<R extends object>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
      count();
      try {
        const result = await db.query<R>(sql, params as unknown[]);
        return result.rows;
      } catch (error) {
        throw toMemoryError(error, where);
      }
    },
    async exec(script: string): Promise<void> {
      count();
      try {
        await db.exec(script);
      } catch (error) {
        throw toMemoryError(error, where);
      }
    },
  };
}

/**
 * The owner process's own path to its embedded database: PGlite called in-process, behind the same
 * gate as socket clients so that neither can run inside the other's transaction.
 */
export function createPgliteTransport(
  db: PGlite,
  gate: Gate,
  location: string,
  onClose: () => Promise<void>,
): SqlTransport {
  let statements = 0;
  let closed = false;
  const count = () => {
    statements += 1;
  };
  const direct = wrap(db, count, location);
  return {
    kind: 'embedded',
    location,
    get statementCount() {
      return statements;
    },
    query: (sql, params) => gate.run(() => direct.query(sql, params)),
    exec: (script) => gate.run(() => direct.exec(script)),
    call: (fn, args, shape) => gate.run(() => callOverSql(direct, fn, args, shape)),
    transaction: (fn) =>
      gate.run(async () => {
        try {
          return await db.transaction((tx) => fn(wrap(tx, count, location)));
        } catch (error) {
          throw toMemoryError(error, location);
        }
      }),
    async close() {
      if (closed) return;
      closed = true;
      await onClose();
    },
  };
}
