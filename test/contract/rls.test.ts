import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretCipher, openMemory, type MemoryStore } from '../../memory/index.js';
import { prepareSupabaseLikeDatabase } from '../support/postgrest-standin.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

const AUTH_A = '0a0a0a0a-0000-4000-8000-00000000000a';
const AUTH_B = '0b0b0b0b-0000-4000-8000-00000000000b';
const AUTH_STRANGER = '0c0c0c0c-0000-4000-8000-00000000000c';

/**
 * Row Level Security as Supabase enforces it: real PostgreSQL with Supabase's roles and an
 * auth.uid() that reads request.jwt.claims, statements run the way PostgREST runs them for a
 * request carrying that JWT (set local role, claims in a transaction-local setting).
 */
describe('Row Level Security', () => {
  let db: TestDatabase;
  let service: MemoryStore;
  let pool: pg.Pool;
  let alice: string;
  let bob: string;

  async function as<T = Record<string, unknown>>(
    role: 'anon' | 'authenticated' | 'service_role',
    sub: string | null,
    sql: string,
    params: unknown[] = [],
  ): Promise<{ rows: T[]; rowCount: number }> {
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`set local role ${role}`);
      await client.query("select set_config('request.jwt.claims', $1, true)", [
        JSON.stringify(sub ? { sub, role } : { role }),
      ]);
      const result = await client.query(sql, params);
      await client.query('commit');
      return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      await client.query('rollback');
      throw error;
    } finally {
      client.release();
    }
  }

  /** Rows the role can see, treating "permission denied" as seeing nothing (what anon should get). */
  async function visible(role: 'anon' | 'authenticated', sub: string | null, table: string): Promise<unknown[]> {
    try {
      return (await as(role, sub, `select * from public.${table}`)).rows;
    } catch (error) {
      expect((error as { code?: string }).code).toBe('42501');
      return [];
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase('rls');
    await prepareSupabaseLikeDatabase(db.url);
    service = await openMemory({ env: {}, databaseUrl: db.url, cipher: new SecretCipher(randomBytes(32)) });
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    await pool.query('insert into auth.users (id, email) values ($1, $2), ($3, $4)', [
      AUTH_A,
      'a@example.com',
      AUTH_B,
      'b@example.com',
    ]);
    for (const [identity, auth, color] of [
      ['alice@example.com', AUTH_A, 'blue'],
      ['bob@example.com', AUTH_B, 'green'],
    ] as const) {
      const { user } = await service.startSession(identity);
      await service.link(identity, auth);
      const handle = service.forUser(user);
      await handle.store('PREFERENCE', 'favorite_color', color);
      await handle.store('FACT', 'secret_fact', `${identity} only`);
      await handle.saveSettings({ config: { voice: color }, secrets: { API_KEY: `${identity}-plaintext-key` } });
    }
    alice = service.userIdFor('alice@example.com');
    bob = service.userIdFor('bob@example.com');
  });
  afterAll(async () => {
    await pool?.end();
    await service?.close();
    await db?.drop();
  });

  it('is enabled on every table', async () => {
    const diagnostics = await service.diagnostics();
    expect(diagnostics.rls).toEqual({
      memory_schema_migrations: true,
      memory_users: true,
      memories: true,
      memory_tombstones: true,
      memory_settings: true,
      memory_audit_log: true,
    });
  });

  it("a user's JWT reads only the memories, settings and profile of the memory user linked to it", async () => {
    const memories = (
      await as<{ user_id: string }>('authenticated', AUTH_A, 'select user_id, key, value from public.memories')
    ).rows;
    expect(memories.length).toBe(2);
    expect(new Set(memories.map((m) => m.user_id))).toEqual(new Set([alice]));

    const settings = (
      await as<{ user_id: string; secrets: unknown }>(
        'authenticated',
        AUTH_A,
        'select user_id, secrets from public.memory_settings',
      )
    ).rows;
    expect(settings.map((s) => s.user_id)).toEqual([alice]);
    expect(JSON.stringify(settings[0]!.secrets)).not.toContain('plaintext-key'); // still encrypted
    expect(JSON.stringify(settings[0]!.secrets)).toContain('"kid"');

    const users = (await as<{ id: string }>('authenticated', AUTH_A, 'select id from public.memory_users')).rows;
    expect(users.map((u) => u.id)).toEqual([alice]);
  });

  it("a user's updates and deletes of another user's rows affect nothing, and it cannot write rows as them", async () => {
    const update = await as('authenticated', AUTH_A, "update public.memories set value = 'hacked' where user_id = $1", [
      bob,
    ]);
    const remove = await as('authenticated', AUTH_A, 'delete from public.memories where user_id = $1', [bob]);
    const settings = await as(
      'authenticated',
      AUTH_A,
      "update public.memory_settings set config = '{}'::jsonb where user_id = $1",
      [bob],
    );
    const settingsDelete = await as('authenticated', AUTH_A, 'delete from public.memory_settings where user_id = $1', [
      bob,
    ]);
    expect([update.rowCount, remove.rowCount, settings.rowCount, settingsDelete.rowCount]).toEqual([0, 0, 0, 0]);
    await expect(
      as(
        'authenticated',
        AUTH_A,
        "insert into public.memories (user_id, category, key, value) values ($1, 'FACT', 'planted', 'x')",
        [bob],
      ),
    ).rejects.toMatchObject({ code: '42501' });
    expect(await service.forIdentity('bob@example.com').retrieve('PREFERENCE', 'favorite_color')).toBe('green');
    expect(await service.forIdentity('bob@example.com').list()).toHaveLength(2);
    expect((await service.forIdentity('bob@example.com').getSettings())?.config).toEqual({ voice: 'green' });
  });

  it('a user changes its own rows', async () => {
    const own = await as(
      'authenticated',
      AUTH_A,
      "update public.memories set value = 'navy' where user_id = $1 and key = 'favorite_color'",
      [alice],
    );
    expect(own.rowCount).toBe(1);
    await as(
      'authenticated',
      AUTH_A,
      "insert into public.memories (user_id, category, key, value) values ($1, 'TASK', 'call_mum', 'sunday')",
      [alice],
    );
    expect(await service.forIdentity('alice@example.com').retrieve('TASK', 'call_mum')).toBe('sunday');
  });

  it('a JWT linked to no memory user, and anon, see nothing', async () => {
    for (const table of [
      'memories',
      'memory_settings',
      'memory_users',
      'memory_audit_log',
      'memory_tombstones',
      'memory_schema_migrations',
    ]) {
      expect(await visible('authenticated', AUTH_STRANGER, table)).toEqual([]);
      expect(await visible('anon', null, table)).toEqual([]);
    }
    expect(await visible('authenticated', AUTH_A, 'memory_audit_log')).toEqual([]);
  });

  it("end users cannot call the service's functions to reach around the policies", async () => {
    for (const role of ['anon', 'authenticated'] as const) {
      await expect(
        as(
          role,
          AUTH_A,
          "select public.memory_retrieve(p_user_id => $1, p_category => 'PREFERENCE', p_key => 'favorite_color')",
          [bob],
        ),
      ).rejects.toMatchObject({ code: '42501' });
    }
    const serviceRole = await as<{ value: string }>(
      'service_role',
      null,
      "select public.memory_retrieve(p_user_id => $1, p_category => 'PREFERENCE', p_key => 'favorite_color') as value",
      [bob],
    );
    expect(serviceRole.rows[0]!.value).toBe('green');
  });

  it('link changes are audited, without secrets', async () => {
    const profile = await service.profile('alice@example.com');
    expect(profile.user?.authUserId).toBe(AUTH_A);
    expect(profile.audit.map((a) => a.action)).toContain('link.set');
    expect(JSON.stringify(profile.audit)).not.toContain('plaintext-key');
  });
});
