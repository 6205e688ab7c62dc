import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrationStatus, openMemory, type MemoryStore } from '../../memory/index.js';
import { SUPERSEDED, migrate } from '../../memory/migrations/index.js';
import { transportOf } from '../../memory/store.js';
import { prepareSupabaseLikeDatabase } from '../support/postgrest-standin.js';
import { createTestDatabase } from '../support/postgres.js';
import { schemaSnapshot } from '../support/schema-snapshot.js';

/**
 * The three migrations of the unreleased schema, as they were, became one baseline. A database
 * that applied them (or only the first) must end up exactly like one migrated from the baseline
 * alone, with its data.
 */
const LEGACY_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'legacy-migrations');
const BASELINE = loadMigrations().find((m) => m.version === '20261126000000')!;
/** Every migration: the baseline first, then those added after it (they run over it as usual). */
const ALL = loadMigrations().map((m) => m.version);
const LATEST = ALL.at(-1)!;

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A Supabase-like database (roles, default privileges, auth.uid()), so that grants matter. */
async function supabaseLike(label: string): Promise<MemoryStore> {
  const db = await createTestDatabase(label);
  cleanups.push(db.drop);
  await prepareSupabaseLikeDatabase(db.url);
  const memory = await openMemory({ env: {}, databaseUrl: db.url, migrate: false, journal: false });
  cleanups.push(() => memory.close());
  return memory;
}

const ALICE = '11111111-1111-5111-8111-111111111111';
const BOB = '22222222-2222-5222-8222-222222222222';
const AUTH_A = '0a0a0a0a-0000-4000-8000-00000000000a';

/**
 * Rows of every table, in a stable order, as the owner sees them. Generated columns (the search
 * migration's tsvector) are derived from the data, not data: left out. Null fields are left out
 * too (jsonb_strip_nulls), so that a column a later migration adds (the lifecycle's consent and
 * expiry, null on existing rows) leaves the data the same.
 */
async function data(memory: MemoryStore): Promise<unknown> {
  const rows = await transportOf(memory).query<{ data: unknown }>(`
    select jsonb_build_object(
      'users', (select jsonb_agg(jsonb_strip_nulls(to_jsonb(u)) order by u.id) from public.memory_users u),
      'memories', (select jsonb_agg(jsonb_strip_nulls(to_jsonb(m) - 'search_tsv') order by m.user_id, m.category, m.key)
                     from public.memories m),
      'settings', (select jsonb_agg(to_jsonb(s) order by s.user_id, s.tenant_id) from public.memory_settings s),
      'tombstones', (select jsonb_agg(to_jsonb(t) order by t.user_id, t.category, t.key)
                       from public.memory_tombstones t where to_regclass('public.memory_tombstones') is not null),
      'audit', (select jsonb_agg(to_jsonb(a) order by a.id) from public.memory_audit_log a)) as data`);
  return rows[0]!.data;
}

describe('the baseline migration over the legacy schema', () => {
  it('is what the three legacy versions became', () => {
    expect(BASELINE.version).toBe('20261126000000');
    expect(SUPERSEDED[BASELINE.version]).toEqual(loadMigrations(LEGACY_DIR).map((m) => m.version));
    expect(ALL[0]).toBe(BASELINE.version);
  });

  it('upgrades a database that applied all three: data intact, schema identical to a fresh one, no stale overloads', async () => {
    const fresh = await supabaseLike('fresh');
    expect((await migrate(transportOf(fresh))).applied).toEqual(ALL);
    const expected = await schemaSnapshot(transportOf(fresh));

    const legacy = await supabaseLike('legacy');
    const t = transportOf(legacy);
    expect((await migrate(t, loadMigrations(LEGACY_DIR))).applied).toEqual(SUPERSEDED[BASELINE.version]);
    // Data the way the legacy functions wrote it: users (one linked), memories with clocks, a
    // tombstone, settings with a secret and a config clock, audit rows.
    await t.query("select public.memory_start_session($1, 'alice@example.com', 10, 'default')", [ALICE]);
    await t.query("select public.memory_provision($1, 'bob@example.com')", [BOB]);
    await t.query("select public.memory_link($1, $2, 'test')", [ALICE, AUTH_A]);
    await t.query("select public.memory_store($1, 'FACT', 'a', 'one', '000001700000000.0000000000.aaaa')", [ALICE]);
    await t.query("select public.memory_store($1, 'PREFERENCE', 'color', 'blue', null)", [ALICE]);
    await t.query("select public.memory_store($1, 'FACT', 'b', 'bee', '000001700000000.0000000001.aaaa')", [BOB]);
    await t.query("select public.memory_forget($1, 'FACT', 'b', '000001700000000.0000000002.aaaa')", [BOB]);
    await t.query(
      `select public.memory_save_settings($1, 'default', '{"voice":"blue"}'::jsonb,
         '{"API_KEY":{"v":1,"kid":"k1","iv":"aa","ct":"bb","tag":"cc","at":"000001700000000.0000000003.aaaa"}}'::jsonb,
         '[]'::jsonb, 'test', '000001700000000.0000000003.aaaa')`,
      [ALICE],
    );
    const before = await data(legacy);
    expect(await t.query('select version from public.memory_schema_migrations order by version')).toHaveLength(3);

    expect((await migrate(t)).applied).toEqual(ALL);

    expect(await data(legacy)).toEqual(before);
    const actual = await schemaSnapshot(t);
    expect(actual).toEqual(expected);
    // Spelled out, although the equality above covers it: no old overload survived.
    const overloads = actual.functions.filter((f) =>
      ['memory_store', 'memory_forget', 'memory_start_session', 'memory_save_settings'].includes(f.name),
    );
    expect(overloads.map((f) => `${f.name} -> ${f.result}`)).toEqual([
      'memory_forget -> jsonb',
      'memory_save_settings -> jsonb',
      'memory_start_session -> jsonb',
      'memory_store -> jsonb',
    ]);
    expect(await t.query('select version from public.memory_schema_migrations order by version')).toEqual(
      ALL.map((version) => ({ version })),
    );
    expect(await t.call('memory_schema_version', {}, 'value')).toBe(LATEST);
    expect(await migrationStatus(t)).toEqual({ current: LATEST, pending: [] });
    expect((await migrate(t)).applied).toEqual([]);

    // And the upgraded data still works through the new functions.
    const forgotten = await t.call(
      'memory_forget',
      { p_user_id: ALICE, p_category: 'FACT', p_key: 'a', p_clock: null },
      'value',
    );
    expect(forgotten).toMatchObject({ existed: true });
    expect(await t.call('memory_retrieve', { p_user_id: BOB, p_category: 'FACT', p_key: 'b' }, 'value')).toBeNull();
  });

  it('upgrades a database that applied only the first legacy migration (no clocks, old overloads)', async () => {
    const fresh = await supabaseLike('fresh1');
    await migrate(transportOf(fresh));
    const expected = await schemaSnapshot(transportOf(fresh));

    const legacy = await supabaseLike('legacy1');
    const t = transportOf(legacy);
    await migrate(t, loadMigrations(LEGACY_DIR).slice(0, 1));
    await t.query("select public.memory_start_session($1, 'alice@example.com', 10)", [ALICE]);
    await t.query("select public.memory_store($1, 'FACT', 'a', 'one')", [ALICE]);

    expect((await migrate(t)).applied).toEqual(ALL);

    expect(await schemaSnapshot(t)).toEqual(expected);
    const rows = await t.query<{ value: string; clock: string }>('select value, clock from public.memories');
    expect(rows).toEqual([{ value: 'one', clock: expect.stringMatching(/^\d{15}\.0000000000\.server$/) }]);
    expect(await t.query('select version from public.memory_schema_migrations order by version')).toEqual(
      ALL.map((version) => ({ version })),
    );
  });

  it('runs again over itself without changing anything (what `supabase db push` may do after `lk-memory migrate`)', async () => {
    const memory = await supabaseLike('rerun');
    const t = transportOf(memory);
    await migrate(t);
    const once = await schemaSnapshot(t);
    for (const migration of loadMigrations()) await t.exec(migration.sql);
    expect(await schemaSnapshot(t)).toEqual(once);
  });
});
