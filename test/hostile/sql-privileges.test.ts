import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMORY_TABLES, SecretCipher, openMemory, type MemoryStore } from '../../memory/index.js';
import { prepareSupabaseLikeDatabase } from '../support/postgrest-standin.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * What anon, authenticated and service_role can do to the schema on a Supabase-like database
 * (Supabase's roles and default privileges, which grant ALL on everything new in public to all
 * three), migrated with the baseline. First the grants, read from the catalogs by enumerating
 * everything in public (so a new table or sequence is checked without being named here); then
 * hostile statements, run the way PostgREST runs a request (set local role, JWT claims).
 */

const AUTH_A = '0a0a0a0a-0000-4000-8000-00000000000a';
const AUTH_B = '0b0b0b0b-0000-4000-8000-00000000000b';
type Role = 'anon' | 'authenticated' | 'service_role';

/** Every grant authenticated may hold: relation, privilege, and the column for column grants. */
const AUTHENTICATED_ALLOWED = [
  'memory_users:SELECT',
  'memories:SELECT',
  'memories:DELETE',
  'memories.user_id:INSERT',
  'memories.category:INSERT',
  'memories.category:UPDATE',
  'memories.key:INSERT',
  'memories.key:UPDATE',
  'memories.value:INSERT',
  'memories.value:UPDATE',
  'memory_settings:SELECT',
  'memory_settings:DELETE',
  'memory_settings.user_id:INSERT',
  'memory_settings.tenant_id:INSERT',
  'memory_settings.config:INSERT',
  'memory_settings.config:UPDATE',
  'memories_write_seq:USAGE',
].sort();

/** The functions authenticated evaluates itself: in the RLS policies and in memories.clock's default. */
const AUTHENTICATED_FUNCTIONS = ['memory_current_user_id', 'memory_server_clock'];

describe('SQL privileges on a Supabase-like database', () => {
  let db: TestDatabase;
  let service: MemoryStore;
  let pool: pg.Pool;
  let alice: string;
  let fooAclBefore: string | null;

  async function owner<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await pool.query(sql, params)).rows as T[];
  }

  async function as(role: Role, sub: string | null, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`set local role ${role}`);
      await client.query("select set_config('request.jwt.claims', $1, true)", [
        JSON.stringify(sub ? { sub, role } : { role }),
      ]);
      const result = await client.query(sql, params);
      await client.query('commit');
      return result;
    } catch (error) {
      await client.query('rollback');
      throw error;
    } finally {
      client.release();
    }
  }

  /** Everything a hostile statement could change: every row of ours and both sequences' state. */
  async function state(): Promise<unknown> {
    const rows = await owner<{ s: unknown }>(`
      select jsonb_build_object(
        'migrations', (select jsonb_agg(to_jsonb(x) order by x.version) from public.memory_schema_migrations x),
        'users', (select jsonb_agg(to_jsonb(x) order by x.id) from public.memory_users x),
        'memories', (select jsonb_agg(to_jsonb(x) order by x.user_id, x.category, x.key) from public.memories x),
        'tombstones', (select jsonb_agg(to_jsonb(x) order by x.user_id, x.category, x.key) from public.memory_tombstones x),
        'settings', (select jsonb_agg(to_jsonb(x) order by x.user_id, x.tenant_id) from public.memory_settings x),
        'audit', (select jsonb_agg(to_jsonb(x) order by x.id) from public.memory_audit_log x),
        'write_seq', (select jsonb_build_object('last', last_value, 'called', is_called) from public.memories_write_seq),
        'audit_seq', (select jsonb_build_object('last', last_value, 'called', is_called) from public.memory_audit_log_id_seq),
        'rls', (select jsonb_object_agg(relname, relrowsecurity) from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r'),
        'policies', (select count(*) from pg_policies where schemaname = 'public')) as s`);
    return rows[0]!.s;
  }

  beforeAll(async () => {
    db = await createTestDatabase('hostile');
    await prepareSupabaseLikeDatabase(db.url);
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    // Another application's function in the same schema, with a name like ours, created before
    // our migration: its grants are its own business.
    await pool.query("create function public.memory_foo() returns text language sql as $$ select 'foo' $$");
    fooAclBefore = (
      await owner<{ acl: string | null }>(
        "select proacl::text as acl from pg_proc where oid = 'public.memory_foo()'::regprocedure",
      )
    )[0]!.acl;
    service = await openMemory({
      env: {},
      databaseUrl: db.url,
      cipher: new SecretCipher(randomBytes(32)),
      journal: false,
    });
    await pool.query('insert into auth.users (id, email) values ($1, $2), ($3, $4)', [
      AUTH_A,
      'a@example.com',
      AUTH_B,
      'b@example.com',
    ]);
    await service.startSession('alice@example.com');
    await service.link('alice@example.com', AUTH_A);
    const handle = service.forIdentity('alice@example.com');
    await handle.store('PREFERENCE', 'favorite_color', 'blue');
    await handle.forget('PREFERENCE', 'gone');
    await handle.saveSettings({ config: { voice: 'blue' }, secrets: { API_KEY: 'plaintext-key' } });
    alice = service.userIdFor('alice@example.com');
  });
  afterAll(async () => {
    await owner('drop function if exists public.memory_foo()').catch(() => undefined);
    await pool?.end();
    await service?.close();
    await db?.drop();
  });

  describe('grants, enumerated from the catalogs', () => {
    /** Every (relation[.column], grantee, privilege) in public, from the ACLs themselves. */
    async function grants(): Promise<Array<{ what: string; grantee: string; privilege: string }>> {
      return owner(`
        select c.relname as what, case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end as grantee, x.privilege_type as privilege
          from pg_class c, aclexplode(c.relacl) x
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
        union all
        select c.relname || '.' || a.attname, case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end, x.privilege_type
          from pg_class c join pg_attribute a on a.attrelid = c.oid, aclexplode(a.attacl) x
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f') and a.attnum > 0`);
    }

    it('public holds only our relations, and every table has Row Level Security (and is in the diagnostics)', async () => {
      const relations = await owner<{ relname: string; relkind: string; relrowsecurity: boolean }>(
        "select relname, relkind, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace and relkind in ('r', 'p', 'v', 'm', 'f', 'S') order by relname",
      );
      expect(relations.length).toBeGreaterThan(0);
      const tables = relations.filter((r) => r.relkind === 'r' || r.relkind === 'p');
      expect(tables.filter((t) => !t.relrowsecurity).map((t) => t.relname)).toEqual([]);
      expect(relations.filter((r) => !['r', 'p', 'S'].includes(r.relkind))).toEqual([]); // no views: nothing to bypass RLS through
      const diagnostics = await service.diagnostics();
      expect(Object.keys(diagnostics.rls).sort()).toEqual(tables.map((t) => t.relname).sort());
      expect(Object.values(diagnostics.rls).every(Boolean)).toBe(true);
      expect([...MEMORY_TABLES].sort()).toEqual(tables.map((t) => t.relname).sort());
    });

    it('anon and PUBLIC have no privilege at all on any relation or column', async () => {
      const all = await grants();
      expect(all.filter((g) => g.grantee === 'anon' || g.grantee === 'PUBLIC')).toEqual([]);
      // And the effective check, which also counts what PUBLIC or a role membership would give.
      const effective = await owner<{ relname: string }>(`
        select c.relname from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
           and (has_table_privilege('anon', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                or has_any_column_privilege('anon', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))
        union all
        select c.relname from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind = 'S'
           and case when c.relkind = 'S' then has_sequence_privilege('anon', c.oid, 'USAGE, SELECT, UPDATE') end`);
      expect(effective).toEqual([]);
    });

    it('authenticated holds exactly the allowed grants (a list of grants, not of tables)', async () => {
      const held = (await grants())
        .filter((g) => g.grantee === 'authenticated')
        .map((g) => `${g.what}:${g.privilege}`)
        .sort();
      expect(held).toEqual(AUTHENTICATED_ALLOWED);
      const sequencesWritable = await owner<{ relname: string }>(`
        select relname from pg_class where relnamespace = 'public'::regnamespace and relkind = 'S'
           and case when relkind = 'S' then has_sequence_privilege('authenticated', oid, 'UPDATE') or has_sequence_privilege('service_role', oid, 'UPDATE') end`);
      expect(sequencesWritable).toEqual([]);
    });

    it('service_role has no TRUNCATE, TRIGGER or REFERENCES anywhere', async () => {
      const held = (await grants()).filter(
        (g) => g.grantee === 'service_role' && ['TRUNCATE', 'TRIGGER', 'REFERENCES'].includes(g.privilege),
      );
      expect(held).toEqual([]);
    });

    it('every function in public has a fixed search_path; ours are not executable by PUBLIC or anon, by authenticated only the RLS helpers', async () => {
      const functions = await owner<{
        name: string;
        config: string[] | null;
        public_acl: boolean;
        anon: boolean;
        authenticated: boolean;
        service: boolean;
      }>(`
        select p.proname as name, p.proconfig as config,
               exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x where x.grantee = 0) as public_acl,
               has_function_privilege('anon', p.oid, 'EXECUTE') as anon,
               has_function_privilege('authenticated', p.oid, 'EXECUTE') as authenticated,
               has_function_privilege('service_role', p.oid, 'EXECUTE') as service
          from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname <> 'memory_foo'
         order by 1`);
      expect(functions.length).toBeGreaterThan(15);
      expect(
        functions.filter((f) => !(f.config ?? []).some((c) => c.startsWith('search_path='))).map((f) => f.name),
      ).toEqual([]);
      expect(functions.filter((f) => f.public_acl || f.anon).map((f) => f.name)).toEqual([]);
      expect(functions.filter((f) => f.authenticated).map((f) => f.name)).toEqual(AUTHENTICATED_FUNCTIONS);
      expect(functions.filter((f) => !f.service).map((f) => f.name)).toEqual([]);
    });

    it("another application's memory_* function keeps its grants", async () => {
      const after = (
        await owner<{ acl: string | null }>(
          "select proacl::text as acl from pg_proc where oid = 'public.memory_foo()'::regprocedure",
        )
      )[0]!.acl;
      expect(after).toBe(fooAclBefore);
      expect(fooAclBefore).toContain('anon=X');
      expect((await as('anon', null, 'select public.memory_foo() as v')).rows).toEqual([{ v: 'foo' }]);
    });
  });

  describe('hostile statements fail with 42501 and change nothing', () => {
    const FUTURE = '999999999999999.0000000000.evil';
    const cases: Array<{ name: string; role: Role; sub?: string; sql: string; params?: () => unknown[] }> = [
      // The migrations table: a changed checksum made every openMemory() fail.
      {
        name: 'anon updates a migration checksum',
        role: 'anon',
        sql: "update public.memory_schema_migrations set checksum = 'x'",
      },
      {
        name: 'authenticated updates a migration checksum',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "update public.memory_schema_migrations set checksum = 'x'",
      },
      { name: 'anon deletes the migration rows', role: 'anon', sql: 'delete from public.memory_schema_migrations' },
      {
        name: 'authenticated deletes the migration rows',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'delete from public.memory_schema_migrations',
      },
      {
        name: 'anon inserts a migration row',
        role: 'anon',
        sql: "insert into public.memory_schema_migrations (version, name, checksum) values ('99990101000000', 'x', 'x')",
      },
      {
        name: 'authenticated inserts a migration row',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "insert into public.memory_schema_migrations (version, name, checksum) values ('99990101000000', 'x', 'x')",
      },
      {
        name: 'service_role updates a migration checksum',
        role: 'service_role',
        sql: "update public.memory_schema_migrations set checksum = 'x'",
      },
      // Sequences: setval reorders "most recent" and the audit log.
      { name: 'anon setval on memories_write_seq', role: 'anon', sql: "select setval('public.memories_write_seq', 1)" },
      {
        name: 'authenticated setval on memories_write_seq',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "select setval('public.memories_write_seq', 1)",
      },
      {
        name: 'service_role setval on memories_write_seq',
        role: 'service_role',
        sql: "select setval('public.memories_write_seq', 1)",
      },
      {
        name: 'anon setval on memory_audit_log_id_seq',
        role: 'anon',
        sql: "select setval('public.memory_audit_log_id_seq', 1)",
      },
      {
        name: 'authenticated setval on memory_audit_log_id_seq',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "select setval('public.memory_audit_log_id_seq', 1)",
      },
      {
        name: 'service_role setval on memory_audit_log_id_seq',
        role: 'service_role',
        sql: "select setval('public.memory_audit_log_id_seq', 1)",
      },
      {
        name: 'authenticated nextval on memory_audit_log_id_seq',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "select nextval('public.memory_audit_log_id_seq')",
      },
      // Search runs through the service only: it filters on the user id it is given.
      {
        name: "anon searches alice's memories",
        role: 'anon',
        sql: "select * from public.memory_search($1, 'blue', null, 10)",
        params: () => [alice],
      },
      {
        name: "authenticated (even alice's own Auth user) calls memory_search",
        role: 'authenticated',
        sub: AUTH_A,
        sql: "select * from public.memory_search($1, 'blue', null, 10)",
        params: () => [alice],
      },
      {
        name: 'anon calls a trigram function of the extensions schema',
        role: 'anon',
        sql: "select extensions.similarity('a', 'b')",
      },
      // An end user's own memories: the value yes, the ordering and ownership no.
      {
        name: 'authenticated moves its own memory into the future (clock)',
        role: 'authenticated',
        sub: AUTH_A,
        sql: `update public.memories set clock = '${FUTURE}' where user_id = $1`,
        params: () => [alice],
      },
      {
        name: 'authenticated reorders its own memory (write_seq)',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'update public.memories set write_seq = 0 where user_id = $1',
        params: () => [alice],
      },
      {
        name: 'authenticated rewrites updated_at',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "update public.memories set updated_at = now() - interval '1 year' where user_id = $1",
        params: () => [alice],
      },
      {
        name: 'authenticated changes user_id of its own memory',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'update public.memories set user_id = gen_random_uuid() where user_id = $1',
        params: () => [alice],
      },
      {
        name: 'authenticated inserts a memory with a future clock',
        role: 'authenticated',
        sub: AUTH_A,
        sql: `insert into public.memories (user_id, category, key, value, clock) values ($1, 'FACT', 'k', 'v', '${FUTURE}')`,
        params: () => [alice],
      },
      {
        name: 'authenticated inserts a memory with its own write_seq',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "insert into public.memories (user_id, category, key, value, write_seq) values ($1, 'FACT', 'k', 'v', 999999999)",
        params: () => [alice],
      },
      {
        name: 'authenticated overwrites its encrypted secrets',
        role: 'authenticated',
        sub: AUTH_A,
        sql: "update public.memory_settings set secrets = '{}'::jsonb where user_id = $1",
        params: () => [alice],
      },
      {
        name: 'authenticated moves its config clock',
        role: 'authenticated',
        sub: AUTH_A,
        sql: `update public.memory_settings set config_clock = '${FUTURE}' where user_id = $1`,
        params: () => [alice],
      },
      {
        name: 'authenticated bumps its settings version',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'update public.memory_settings set version = 0 where user_id = $1',
        params: () => [alice],
      },
      // Tables end users have no business with.
      {
        name: 'authenticated reads tombstones',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'select * from public.memory_tombstones',
      },
      {
        name: 'authenticated plants a tombstone',
        role: 'authenticated',
        sub: AUTH_A,
        sql: `insert into public.memory_tombstones (user_id, category, key, clock) values ($1, 'PREFERENCE', 'favorite_color', '${FUTURE}')`,
        params: () => [alice],
      },
      { name: 'anon deletes tombstones', role: 'anon', sql: 'delete from public.memory_tombstones' },
      {
        name: 'authenticated deletes the audit log',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'delete from public.memory_audit_log',
      },
      { name: 'anon reads users', role: 'anon', sql: 'select * from public.memory_users' },
      {
        name: 'authenticated updates its user row (link)',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'update public.memory_users set auth_user_id = $1',
        params: () => [AUTH_B],
      },
      // TRUNCATE ignores RLS; nobody but the owner may.
      { name: 'service_role truncates memories', role: 'service_role', sql: 'truncate public.memories' },
      {
        name: 'service_role truncates the migrations table',
        role: 'service_role',
        sql: 'truncate public.memory_schema_migrations',
      },
      { name: 'anon truncates the audit log', role: 'anon', sql: 'truncate public.memory_audit_log' },
      { name: 'authenticated truncates memories', role: 'authenticated', sub: AUTH_A, sql: 'truncate public.memories' },
      // Our functions bypass RLS by design (they filter on the user id given): service side only.
      {
        name: 'anon calls memory_store',
        role: 'anon',
        sql: "select public.memory_store($1, 'FACT', 'x', 'y', null)",
        params: () => [alice],
      },
      {
        name: 'authenticated calls memory_store',
        role: 'authenticated',
        sub: AUTH_B,
        sql: "select public.memory_store($1, 'FACT', 'x', 'y', null)",
        params: () => [alice],
      },
      {
        name: 'authenticated calls memory_forget',
        role: 'authenticated',
        sub: AUTH_B,
        sql: "select public.memory_forget($1, 'PREFERENCE', 'favorite_color', null)",
        params: () => [alice],
      },
      {
        name: 'anon calls memory_forget_all',
        role: 'anon',
        sql: 'select public.memory_forget_all($1)',
        params: () => [alice],
      },
      {
        name: 'authenticated calls memory_save_settings',
        role: 'authenticated',
        sub: AUTH_B,
        sql: "select public.memory_save_settings($1, 'default', '{}'::jsonb, null, null, 'evil', null, null)",
        params: () => [alice],
      },
      {
        name: 'authenticated calls memory_link',
        role: 'authenticated',
        sub: AUTH_B,
        sql: "select public.memory_link($1, $2, 'evil')",
        params: () => [alice, AUTH_B],
      },
      { name: 'anon calls memory_diagnostics', role: 'anon', sql: 'select public.memory_diagnostics()' },
      {
        name: 'authenticated calls memory_profile',
        role: 'authenticated',
        sub: AUTH_B,
        sql: 'select public.memory_profile($1)',
        params: () => [alice],
      },
      { name: 'anon calls memory_current_user_id', role: 'anon', sql: 'select public.memory_current_user_id()' },
      // DDL: owner only.
      {
        name: 'authenticated disables RLS',
        role: 'authenticated',
        sub: AUTH_A,
        sql: 'alter table public.memories disable row level security',
      },
      { name: 'service_role drops a policy', role: 'service_role', sql: 'drop policy memories_own on public.memories' },
      {
        name: 'anon replaces memory_server_clock',
        role: 'anon',
        sql: "create or replace function public.memory_server_clock() returns text language sql as $$ select '9' $$",
      },
    ];

    it('has enough cases to mean something', () => {
      expect(cases.length).toBeGreaterThanOrEqual(20);
    });

    it.each(cases)('$name', async ({ role, sub, sql, params }) => {
      const before = await state();
      const error = await as(role, sub ?? null, sql, params?.() ?? []).then(
        (result) => new Error(`succeeded: ${JSON.stringify(result.rows).slice(0, 200)} (${result.rowCount} rows)`),
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: '42501' });
      expect(await state()).toEqual(before);
    });

    it('what end users may do still works: edit a value, insert their own memory (write_seq and clock defaults), change their config', async () => {
      const row = () =>
        owner<{ clock: string; write_seq: string; config_clock: string; version: string }>(
          `select m.clock, m.write_seq, s.config_clock, s.version from public.memories m, public.memory_settings s
          where m.user_id = $1 and m.key = 'favorite_color' and s.user_id = m.user_id`,
          [alice],
        );
      const [before] = await row();
      const edit = await as(
        'authenticated',
        AUTH_A,
        "update public.memories set value = 'navy' where user_id = $1 and key = 'favorite_color'",
        [alice],
      );
      expect(edit.rowCount).toBe(1);
      await as(
        'authenticated',
        AUTH_A,
        "insert into public.memories (user_id, category, key, value) values ($1, 'TASK', 'call_mum', 'sunday')",
        [alice],
      );
      const config = await as(
        'authenticated',
        AUTH_A,
        `update public.memory_settings set config = '{"voice":"navy"}'::jsonb where user_id = $1`,
        [alice],
      );
      expect(config.rowCount).toBe(1);
      const inserted = await owner<{ clock: string; write_seq: string }>(
        "select clock, write_seq from public.memories where key = 'call_mum'",
      );
      expect(inserted[0]!.clock).toMatch(/^\d{15}\.0000000000\.server$/);
      expect(await service.forIdentity('alice@example.com').retrieve('TASK', 'call_mum')).toBe('sunday');
      // A direct edit is the newest write: a later clock and write order (the triggers), so a
      // journal replay made before it cannot undo it.
      const [after] = await row();
      expect(after!.clock > before!.clock).toBe(true);
      expect(BigInt(after!.write_seq) > BigInt(before!.write_seq)).toBe(true);
      expect(after!.config_clock > before!.config_clock).toBe(true);
      expect(Number(after!.version)).toBe(Number(before!.version) + 1);
      const replay = await service.forIdentity('alice@example.com').retrieve('PREFERENCE', 'favorite_color');
      expect(replay).toBe('navy');
      const stale = await owner<{ r: { applied: boolean } }>(
        "select public.memory_store($1, 'PREFERENCE', 'favorite_color', 'stale', $2) as r",
        [alice, before!.clock.replace(/\.[^.]+$/, '.zzzz')],
      );
      expect(stale[0]!.r.applied).toBe(false);
    });
  });
});
