import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresTransport, type PostgresTransport } from '../../memory/transports/postgres.js';
import { openMemory } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * The PostgreSQL transport sends the store's statements as named prepared statements, and falls
 * back to unnamed ones for good when a transaction pooler loses them (PgBouncer before 1.21: the
 * server connection a name was prepared on is not the one the next statement gets).
 */
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function database(label: string): Promise<TestDatabase> {
  const db = await createTestDatabase(label);
  cleanups.push(() => db.drop());
  return db;
}

describe('named prepared statements', () => {
  it('on a direct connection: prepared once per connection, named by a hash of the text, answers right', async () => {
    const db = await database('prepared_direct');
    const memory = await openMemory({ env: {}, databaseUrl: db.url, journal: false, maxConnections: 1 });
    cleanups.push(() => memory.close());
    const alice = memory.forUser((await memory.startSession('prepared-alice@example.com')).user);
    for (let i = 0; i < 20; i += 1) await alice.store('FACT', `k${i % 5}`, `v${i}`);
    expect(await alice.retrieve('FACT', 'k4')).toBe('v19');
    expect(await alice.retrieve('FACT', 'nothing')).toBeNull();

    // One pool connection: a statement without parameters (never prepared) sees its session.
    const sql = transportOf(memory);
    const names = await sql.query<{ name: string; statement: string }>(
      'select name, statement from pg_prepared_statements order by name',
    );
    expect((sql as PostgresTransport).preparing).toBe(true);
    const store = names.filter((n) => n.statement.includes('public.memory_store('));
    expect(store).toHaveLength(1);
    expect(store[0]!.name).toMatch(/^lkm_[0-9a-f]{32}$/);
    expect(names.some((n) => n.statement.includes('public.memory_retrieve('))).toBe(true);
  });

  it('turned off, nothing is prepared', async () => {
    const db = await database('prepared_off');
    const transport = createPostgresTransport({
      connectionString: db.url,
      maxConnections: 1,
      preparedStatements: false,
    });
    cleanups.push(() => transport.close());
    expect(await transport.query<{ n: number }>('select $1::int + 1 as n', [1])).toEqual([{ n: 2 }]);
    expect(await transport.query('select name from pg_prepared_statements')).toEqual([]);
    expect(transport.preparing).toBe(false);
  });

  it('through a transaction pooler that loses them: every answer is right, and the transport stops preparing', async () => {
    const db = await database('prepared_pooler');
    // One server connection: two client connections that prepare the same name meet on it, and
    // the second is told "already exists" (42P05); a later Bind elsewhere is told "does not exist".
    const bouncer: PgBouncer = await startPgBouncer({ poolSize: 1 });
    cleanups.push(() => bouncer.stop());
    const memory = await openMemory({
      env: {},
      databaseUrl: bouncer.urlFor(db.url),
      journal: false,
      maxConnections: 4,
    });
    cleanups.push(() => memory.close());
    const alice = memory.forUser((await memory.startSession('pooled-alice@example.com')).user);
    const writes = await Promise.all(Array.from({ length: 24 }, (_, i) => alice.store('FACT', `k${i}`, `v${i}`)));
    expect(writes.every((w) => w.applied && w.savedTo === 'database')).toBe(true);
    const reads = await Promise.all(Array.from({ length: 24 }, (_, i) => alice.retrieve('FACT', `k${i}`)));
    expect(reads).toEqual(Array.from({ length: 24 }, (_, i) => `v${i}`));
    expect((transportOf(memory) as PostgresTransport).preparing).toBe(false);
  });
});
