import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prewarmMemory, processMemoryStore } from '../../plugins/index.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/** Connections to one database as PostgreSQL sees them, this check's own excluded. */
async function connectionsTo(db: TestDatabase): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      'select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

describe('prewarmMemory (a job process before its first call)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('prewarm');
    const { openMemory } = await import('../../memory/index.js');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close(); // migrate
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('opens the database connection before the call, so the first session does not pay for connecting', async () => {
    const proc = {}; // agents-js's JobProcess: only its identity matters
    expect(await connectionsTo(db)).toBe(0);
    await prewarmMemory(proc, { env: {}, databaseUrl: db.url, journal: false });
    expect(await connectionsTo(db)).toBe(1);
    const store = await processMemoryStore(proc);
    const before = store.statementCount;
    await store.startSession('prewarmed@example.com');
    expect(store.statementCount - before).toBe(1);
    // Still the one connection: the session used the warm one.
    expect(await connectionsTo(db)).toBe(1);
    await store.close();
  });

  it('never throws when the database is unreachable: the session tries again later', async () => {
    const proc = {};
    await expect(
      prewarmMemory(proc, {
        env: {},
        databaseUrl: 'postgres://postgres@127.0.0.1:1/nothing',
        journal: false,
        timeoutMs: 500,
      }),
    ).resolves.toBeUndefined();
  });
});
