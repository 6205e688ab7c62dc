import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryError, loadMigrations, migrationStatus, openMemory } from '../../memory/index.js';
import { PREVIOUS_CHECKSUMS, migrate } from '../../memory/migrations/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

async function freshPostgres(): Promise<TestDatabase> {
  const db = await createTestDatabase('migrations');
  cleanups.push(db.drop);
  return db;
}

describe('migrations', () => {
  it('live in supabase/migrations with Supabase CLI names and end with a PostgREST schema reload', () => {
    const migrations = loadMigrations();
    expect(migrations.length).toBeGreaterThan(0);
    for (const migration of migrations) {
      expect(migration.version).toMatch(/^\d{14}$/);
      expect(migration.sql.trimEnd()).toMatch(/notify pgrst, 'reload schema';$/i);
      expect(migration.sql).not.toMatch(/references\s+auth\.users/i);
    }
  });

  it('apply once, are tracked, and do nothing the second time (PostgreSQL)', async () => {
    const db = await freshPostgres();
    const memory = await openMemory({ env: {}, databaseUrl: db.url, migrate: false });
    try {
      const before = await migrationStatus(transportOf(memory));
      expect(before.current).toBeUndefined();
      expect(before.pending).toEqual(loadMigrations().map((m) => m.version));
      const first = await memory.migrate();
      expect(first.applied).toEqual(before.pending);
      const second = await memory.migrate();
      expect(second.applied).toEqual([]);
      expect(await migrationStatus(transportOf(memory))).toEqual({ current: first.current, pending: [] });
    } finally {
      await memory.close();
    }
  });

  it('tolerate workers that start together (PostgreSQL)', async () => {
    const db = await freshPostgres();
    const stores = await Promise.all(Array.from({ length: 6 }, () => openMemory({ env: {}, databaseUrl: db.url })));
    try {
      const rows = await transportOf(stores[0]!).query<{ n: number }>(
        'select count(*)::int as n from public.memory_schema_migrations',
      );
      expect(rows[0]!.n).toBe(loadMigrations().length);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('re-run cleanly over a schema that the Supabase CLI applied (no tracking rows)', async () => {
    const db = await freshPostgres();
    const memory = await openMemory({ env: {}, databaseUrl: db.url, migrate: false });
    try {
      const transport = transportOf(memory);
      for (const migration of loadMigrations()) await transport.exec(migration.sql); // what `supabase db push` does
      await transport.exec('insert into public.memory_users (id, identity) values (gen_random_uuid(), $$kept$$)');
      const result = await memory.migrate();
      expect(result.applied.length).toBe(loadMigrations().length);
      expect(await transport.query("select 1 from public.memory_users where identity = 'kept'")).toHaveLength(1);
    } finally {
      await memory.close();
    }
  });

  it('refuse an applied migration whose file has changed', async () => {
    const db = await freshPostgres();
    const memory = await openMemory({ env: {}, databaseUrl: db.url });
    try {
      const edited = loadMigrations().map((m, i) => (i === 0 ? { ...m, checksum: 'edited' } : m));
      const error = await migrate(transportOf(memory), edited).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MemoryError);
      expect((error as MemoryError).code).toBe('MIGRATION_FAILED');
      expect((error as MemoryError).message).toContain('changed after it was applied');
    } finally {
      await memory.close();
    }
  });

  it('accept a listed earlier text of an edited migration (PREVIOUS_CHECKSUMS) and record the current one; nothing else', async () => {
    const db = await freshPostgres();
    const memory = await openMemory({ env: {}, databaseUrl: db.url, migrate: false, journal: false });
    try {
      const t = transportOf(memory);
      await memory.migrate();
      const search = loadMigrations().find((m) => m.version === '20261206000000')!;
      const [previous] = PREVIOUS_CHECKSUMS[search.version]!;
      expect(previous).toMatch(/^[0-9a-f]{64}$/);
      expect(previous).not.toBe(search.checksum);
      // A database that applied the earlier text of the search migration.
      await t.query('update public.memory_schema_migrations set checksum = $2 where version = $1', [
        search.version,
        previous,
      ]);
      expect((await memory.migrate()).applied).toEqual([]);
      expect(
        await t.query('select checksum from public.memory_schema_migrations where version = $1', [search.version]),
      ).toEqual([{ checksum: search.checksum }]);
      // Any other recorded checksum is still an edit.
      await t.query("update public.memory_schema_migrations set checksum = 'something else' where version = $1", [
        search.version,
      ]);
      const error = await memory.migrate().catch((e: unknown) => e);
      expect((error as MemoryError).code).toBe('MIGRATION_FAILED');
    } finally {
      await memory.close();
    }
  });

  it('apply on the embedded database when it is opened, and persist the version', async () => {
    const dataDir = tempDataDir('migrate');
    cleanups.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
    const first = await openMemory({ env: {}, dataDir, serve: false });
    const status = await migrationStatus(transportOf(first));
    await first.close();
    expect(status.pending).toEqual([]);
    const second = await openMemory({ env: {}, dataDir, serve: false });
    try {
      expect((await second.migrate()).applied).toEqual([]);
    } finally {
      await second.close();
    }
  });

  it('report a database without the schema as SCHEMA_NOT_MIGRATED', async () => {
    const db = await freshPostgres();
    const memory = await openMemory({ env: {}, databaseUrl: db.url, migrate: false });
    try {
      const error = await memory
        .forIdentity('x@example.com')
        .retrieve('FACT', 'k')
        .catch((e: unknown) => e);
      expect((error as MemoryError).code).toBe('SCHEMA_NOT_MIGRATED');
      expect((error as MemoryError).message).toContain('lk-memory migrate');
      const provisioning = await memory.startSession('x@example.com').catch((e: unknown) => e);
      expect((provisioning as MemoryError).code).toBe('PROVISIONING_FAILED');
      expect((provisioning as MemoryError).reason).toBe('SCHEMA_NOT_MIGRATED');
    } finally {
      await memory.close();
    }
  });
});
