import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryError, SecretCipher, loadMigrations, openMemory } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir, type BackendUnderTest } from '../support/backends.js';
import { PgBouncerError, findPgBouncer, startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { createTestDatabase } from '../support/postgres.js';
import { describeStoreContract } from './store-contract.js';

/**
 * The whole store contract (settings included) through a real PgBouncer in transaction pooling
 * mode, the mode of Supabase's pooled connection string: migrations, provisioning's per-identity
 * lock, the concurrency tests and the raw SQL of the assertions all go through the pooler.
 */
let bouncer: PgBouncer | undefined;
const pooler = async () => (bouncer ??= await startPgBouncer({ poolSize: 4 }));

describe('the PgBouncer helper', () => {
  it('without pgbouncer, fails (never skips) and says how to install it', () => {
    const empty = tempDataDir('nopgbouncer');
    let caught: unknown;
    try {
      findPgBouncer({ PATH: empty }, []);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(PgBouncerError);
    expect((caught as PgBouncerError).code).toBe('PGBOUNCER_NOT_INSTALLED');
    expect((caught as PgBouncerError).message).toContain('apt-get install -y pgbouncer');
    expect(() => findPgBouncer({ PGBOUNCER_BIN: `${empty}/pgbouncer` })).toThrow(/apt-get install -y pgbouncer/);
  });
});

describe('the pooler under test really pools by transaction', () => {
  // Without this, a PgBouncer in session mode (or a direct connection) would pass everything below.
  it('session state stays on the server connection, not with the client: SET and named prepared statements', async () => {
    const db = await createTestDatabase('pgbouncer_mode');
    const url = (await pooler()).urlFor(db.url);
    const a = new pg.Client({ connectionString: url });
    const b = new pg.Client({ connectionString: url });
    try {
      await a.connect();
      await b.connect();
      // A fresh database: its pool has one server connection, the one a's statements ran on.
      await a.query("set lkm.mark = 'from-a'");
      await a.query({ name: 'a_prepared', text: 'select $1::int + 1 as n', values: [1] });
      // b gets that same server connection and sees a's setting...
      const seen = await b.query<{ mark: string | null }>("select current_setting('lkm.mark', true) as mark");
      expect(seen.rows[0]!.mark).toBe('from-a');
      // ...and while b holds it in a transaction, a's next statements run on another one.
      await b.query('begin');
      await b.query('select 1');
      const own = await a.query<{ mark: string | null }>("select current_setting('lkm.mark', true) as mark");
      expect(own.rows[0]!.mark ?? '').toBe('');
      const reuse = await a.query({ name: 'a_prepared', text: 'select $1::int + 1 as n', values: [2] }).then(
        () => 'ran',
        (error: Error) => error.message,
      );
      expect(reuse).toMatch(/prepared statement "a_prepared" does not exist/);
      await b.query('commit');
    } finally {
      await Promise.all([a.end().catch(() => {}), b.end().catch(() => {})]);
      await db.drop();
    }
  });
});

describe("the pooler's own refusals", () => {
  // PgBouncer says "no database for you now" with SQLSTATE 08P01 (protocol_violation) and its own
  // words; mapped by SQLSTATE alone that was DATABASE_ERROR, and a write failed instead of being
  // journaled. (The outage test in test/faults covers "server login has been failing".)
  it('a full pooler (max_client_conn) is BACKEND_UNAVAILABLE, not a database error', async () => {
    const db = await createTestDatabase('pgbouncer_full');
    const full = await startPgBouncer({ settings: { max_client_conn: 1 } });
    const holder = new pg.Client({ connectionString: full.urlFor(db.url) });
    try {
      await holder.connect();
      const memory = await openMemory({ env: {}, databaseUrl: full.urlFor(db.url), journal: false, migrate: false });
      const caught = await memory.startSession('full-pooler@example.com').then(
        () => undefined,
        (error: unknown) => error,
      );
      await memory.close();
      expect(caught).toBeInstanceOf(MemoryError);
      expect((caught as MemoryError).message).toMatch(/no more connections allowed/);
      expect((caught as MemoryError).code).toBe('BACKEND_UNAVAILABLE');
    } finally {
      await holder.end().catch(() => {});
      await full.stop();
      await db.drop();
    }
  });
});

describe('migrations through the pooler', () => {
  // They need no direct connection: every pending migration runs in one transaction, under a
  // transaction-scoped advisory lock (pg_advisory_xact_lock), which a transaction pooler keeps on
  // one server connection from begin to commit. A session lock (pg_advisory_lock ... unlock)
  // would be taken on one server connection and released, or not, on another.
  it('six workers starting together on a fresh database apply each migration once', async () => {
    const db = await createTestDatabase('pgbouncer_migrate');
    const url = (await pooler()).urlFor(db.url);
    const stores = await Promise.all(
      Array.from({ length: 6 }, () => openMemory({ env: {}, databaseUrl: url, journal: false })),
    );
    try {
      const rows = await transportOf(stores[0]!).query<{ version: string }>(
        'select version from public.memory_schema_migrations order by version',
      );
      expect(rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version));
      const again = await stores[1]!.migrate();
      expect(again.applied).toEqual([]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    }
  });
});

describeStoreContract('postgres through PgBouncer (transaction pooling)', async (): Promise<BackendUnderTest> => {
  const db = await createTestDatabase('pgbouncer');
  const memory = await openMemory({
    env: {},
    databaseUrl: (await pooler()).urlFor(db.url),
    cipher: new SecretCipher(randomBytes(32)),
    dataDir: tempDataDir('pgbjournal'),
  });
  return {
    name: 'postgres-pgbouncer',
    memory,
    sql: (text, params = []) => transportOf(memory).query(text, params),
    close: async () => {
      await memory.close();
      await db.drop();
    },
  };
});

beforeAll(async () => {
  await pooler();
});
afterAll(async () => {
  await bouncer?.stop();
});
