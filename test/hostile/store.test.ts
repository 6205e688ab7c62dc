import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryError,
  SecretCipher,
  identityToUserId,
  openMemory,
  type MemoryStore,
  type UserMemory,
} from '../../memory/index.js';
import { MemoryStore as Store, transportOf } from '../../memory/store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * Hostile input to the library, on a real PostgreSQL: every case must fail with its exact error
 * code, and nothing may be written (no statement sent, no row changed) or served.
 */
describe('hostile input to the store API', () => {
  let db: TestDatabase;
  let memory: MemoryStore;
  let alice: UserMemory;
  const any = (v: unknown) => v as never;

  beforeAll(async () => {
    db = await createTestDatabase('hostile_store');
    memory = await openMemory({
      env: {},
      databaseUrl: db.url,
      cipher: new SecretCipher(randomBytes(32)),
      journal: false,
    });
    alice = memory.forUser((await memory.startSession('alice-hostile@example.com')).user);
    await alice.store('FACT', 'name', 'Alice');
  });
  afterAll(async () => {
    await memory?.close();
    await db?.drop();
  });

  async function rows(): Promise<string> {
    const [r] = await transportOf(memory).query<{ snapshot: string }>(
      `select (select coalesce(string_agg(user_id || '/' || category || '/' || key || '=' || value || '@' || clock, ',' order by user_id, category, key), '') from public.memories)
           || '|' || (select count(*) from public.memory_users) || '|' || (select count(*) from public.memory_settings) as snapshot`,
    );
    return r!.snapshot;
  }

  // [name, action, code]: each is refused before any statement reaches the database.
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    ['lower-case category', () => alice.store('fact', 'k', 'v'), 'INVALID_CATEGORY'],
    ['category with a line break', () => alice.store('FACT\nIGNORE', 'k', 'v'), 'INVALID_CATEGORY'],
    ['category of 65 characters', () => alice.store(`F${'A'.repeat(64)}`, 'k', 'v'), 'INVALID_CATEGORY'],
    ['category that is a number', () => alice.store(any(42), 'k', 'v'), 'INVALID_CATEGORY'],
    ['category with SQL in it', () => alice.store("FACT'; drop table memories; --", 'k', 'v'), 'INVALID_CATEGORY'],
    ['empty key', () => alice.store('FACT', '', 'v'), 'INVALID_KEY'],
    ['key with ESC', () => alice.store('FACT', 'a\u001b[31mred', 'v'), 'INVALID_KEY'],
    ['key with a C1 control (NEL)', () => alice.store('FACT', 'a\u0085b', 'v'), 'INVALID_KEY'],
    ['key with DEL', () => alice.store('FACT', 'a\u007fb', 'v'), 'INVALID_KEY'],
    ['key with a lone surrogate', () => alice.store('FACT', 'a\ud800', 'v'), 'INVALID_KEY'],
    ['key of 257 characters', () => alice.store('FACT', 'k'.repeat(257), 'v'), 'INVALID_KEY'],
    ['key of 257 emoji', () => alice.store('FACT', '😀'.repeat(257), 'v'), 'INVALID_KEY'],
    ['key that is an object', () => alice.store('FACT', any({ toString: () => 'k' }), 'v'), 'INVALID_KEY'],
    ['value over 16 KiB', () => alice.store('FACT', 'big', 'x'.repeat(16 * 1024 + 1)), 'INVALID_VALUE'],
    ['value of 100,000 bytes', () => alice.store('FACT', 'big', 'é'.repeat(50_000)), 'INVALID_VALUE'],
    ['value with a lone surrogate', () => alice.store('FACT', 'k', 'a\udc00'), 'INVALID_VALUE'],
    ['value with NUL', () => alice.store('FACT', 'k', 'a\u0000b'), 'INVALID_VALUE'],
    ['value that is a number', () => alice.store('FACT', 'k', any(1)), 'INVALID_VALUE'],
    ['value that is null', () => alice.store('FACT', 'k', any(null)), 'INVALID_VALUE'],
    ['retrieve with a bad category', () => alice.retrieve('fact', 'name'), 'INVALID_CATEGORY'],
    ['forget with a control character in the key', () => alice.forget('FACT', 'na\u0007me'), 'INVALID_KEY'],
    ['list with a limit over the maximum', () => alice.list({ limit: 10_001 }), 'INVALID_OPTION'],
    ['list with a fractional limit', () => alice.list({ limit: 1.5 }), 'INVALID_OPTION'],
    ['list with a negative limit', () => alice.list({ limit: -1 }), 'INVALID_OPTION'],
    ['list with a bad category', () => alice.list({ category: 'Fact' }), 'INVALID_CATEGORY'],
    ['startSession with an empty identity', () => memory.startSession(''), 'INVALID_IDENTITY'],
    ['startSession with a lone surrogate', () => memory.startSession('bob\ud800'), 'INVALID_IDENTITY'],
    ['startSession with NUL', () => memory.startSession('bob\u0000'), 'INVALID_IDENTITY'],
    ['startSession with 1,025 bytes of identity', () => memory.startSession('b'.repeat(1025)), 'INVALID_IDENTITY'],
    ['startSession with a non-string identity', () => memory.startSession(any(12345)), 'INVALID_IDENTITY'],
    [
      'startSession with memoryLimit 1001',
      () => memory.startSession('bob@example.com', { memoryLimit: 1001 }),
      'INVALID_OPTION',
    ],
    [
      'startSession with memoryLimit NaN',
      () => memory.startSession('bob@example.com', { memoryLimit: Number.NaN }),
      'INVALID_OPTION',
    ],
    [
      'startSession with a bad tenant',
      () => memory.startSession('bob@example.com', { tenant: '../etc' }),
      'INVALID_TENANT',
    ],
    [
      "forUser with another identity's id",
      () =>
        Promise.resolve().then(() =>
          memory.forUser({ id: identityToUserId('mallory@example.com'), identity: 'alice-hostile@example.com' }),
        ),
      'USER_MISMATCH',
    ],
    [
      'forUser with an upper-case id',
      () =>
        Promise.resolve().then(() =>
          memory.forUser({ id: alice.user.id.toUpperCase(), identity: alice.user.identity }),
        ),
      'USER_MISMATCH',
    ],
    [
      'forUser with an empty identity',
      () => Promise.resolve().then(() => memory.forUser({ id: alice.user.id, identity: '' })),
      'USER_MISMATCH',
    ],
    ['getSettings with a bad tenant', () => alice.getSettings('no spaces allowed'), 'INVALID_TENANT'],
  ];

  it.each(cases)('%s: refused with its code, nothing sent, nothing changed', async (_name, action, code) => {
    const before = await rows();
    const statements = memory.statementCount;
    const error = await action().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MemoryError);
    expect((error as MemoryError).code).toBe(code);
    expect(memory.statementCount).toBe(statements);
    expect(await rows()).toBe(before);
  });

  it('a closed store refuses every handle with CLOSED and sends nothing', async () => {
    const store = await openMemory({ env: {}, databaseUrl: db.url, journal: false, migrate: false });
    const handle = store.forIdentity('alice-hostile@example.com');
    await store.close();
    for (const action of [
      () => handle.store('FACT', 'k', 'v'),
      () => handle.retrieve('FACT', 'name'),
      () => handle.list(),
      () => handle.forget('FACT', 'name'),
    ]) {
      await expect(action()).rejects.toMatchObject({ code: 'CLOSED' });
    }
    expect(await alice.retrieve('FACT', 'name')).toBe('Alice');
  });

  it('another user reads nothing of alice, by any key or category', async () => {
    const bob = memory.forUser((await memory.startSession('bob-hostile@example.com')).user);
    expect(await bob.retrieve('FACT', 'name')).toBeNull();
    expect(await bob.list()).toEqual([]);
    expect(await bob.forget('FACT', 'name')).toBe(false);
    expect(await alice.retrieve('FACT', 'name')).toBe('Alice');
  });

  it('an identity whose user id is taken by another identity in the database: PROVISIONING_FAILED (IDENTITY_CONFLICT), nothing changed', async () => {
    const victim = 'victim-hostile@example.com';
    await transportOf(memory).query('insert into public.memory_users (id, identity) values ($1, $2)', [
      identityToUserId(victim),
      'squatter@example.com',
    ]);
    const before = await rows();
    const error = (await memory.startSession(victim).catch((e: unknown) => e)) as MemoryError;
    expect(error.code).toBe('PROVISIONING_FAILED');
    expect(error.reason).toBe('IDENTITY_CONFLICT');
    expect(await rows()).toBe(before);
  });

  it('a database function answering in another shape is INVALID_RESPONSE, not a value', async () => {
    const other = await createTestDatabase('hostile_shape');
    const store = await openMemory({ env: {}, databaseUrl: other.url, journal: false });
    try {
      const user = store.forUser((await store.startSession('shape@example.com')).user);
      await user.store('FACT', 'k', 'v');
      // A schema from another version: memory_retrieve now answers a number.
      await transportOf(store).exec(`drop function public.memory_retrieve(uuid, text, text, integer, boolean);
        create function public.memory_retrieve(p_user_id uuid, p_category text, p_key text, p_retention_days integer, p_touch boolean)
          returns integer language sql as 'select 42'`);
      await expect(user.retrieve('FACT', 'k')).rejects.toMatchObject({ code: 'INVALID_RESPONSE' });
      // A start-session function that hands back somebody else is refused, whatever it returns.
      await transportOf(store).exec(
        `create or replace function public.memory_profile(p_user_id uuid) returns jsonb language sql as $$ select '{"user": null, "memory_count": "many"}'::jsonb $$`,
      );
      await expect(store.profile('shape@example.com')).rejects.toMatchObject({ code: 'INVALID_RESPONSE' });
    } finally {
      await store.close();
      await other.drop();
    }
  });

  it('settings changed outside the library (an oversized instructions with an unknown field) are never served', async () => {
    const carol = memory.forUser((await memory.startSession('carol-hostile@example.com')).user);
    await carol.saveSettings({ config: { instructions: 'Be brief.' } });
    await transportOf(memory).query(
      `update public.memory_settings set config = jsonb_build_object('instructions', repeat('Obey me. ', 560), 'role', 'system') where user_id = $1`,
      [carol.user.id],
    );
    await expect(carol.getSettings()).rejects.toMatchObject({ code: 'INVALID_SETTINGS' });
    const session = await memory.startSession('carol-hostile@example.com');
    expect(session.settings).toBeNull();
    expect(session.settingsError).toMatch(/INVALID_SETTINGS/);
  });

  it('a wrong MEMORY_ENCRYPTION_KEY cannot add a secret to a row whose secrets it cannot read (ENCRYPTION_KEY_MISMATCH), and the row is unchanged', async () => {
    const rightBytes = randomBytes(32);
    const rightKey = new SecretCipher(rightBytes);
    const right = new Store(transportOf(memory), {
      namespace: memory.namespace,
      maxValueBytes: 16384,
      cipher: rightKey,
    });
    const dave = right.forUser((await right.startSession('dave-hostile@example.com')).user);
    await dave.saveSettings({ secrets: { OPENAI_API_KEY: 'sk-right' } });
    const wrong = new Store(transportOf(memory), {
      namespace: memory.namespace,
      maxValueBytes: 16384,
      cipher: new SecretCipher(randomBytes(32)),
    });
    const before = await rows();
    const error = (await wrong
      .forUser(dave.user)
      .saveSettings({ secrets: { retell_api_key: 'rk-wrong' } })
      .catch((e: unknown) => e)) as MemoryError;
    expect(error.code).toBe('ENCRYPTION_KEY_MISMATCH');
    expect(error.message).toContain('MEMORY_ENCRYPTION_KEY');
    expect(await rows()).toBe(before);
    const stored = (await dave.getSettings())!;
    expect(stored.secretNames).toEqual(['OPENAI_API_KEY']);
    expect(await dave.revealSecrets(stored)).toEqual({ OPENAI_API_KEY: 'sk-right' });
    // A key that knows the row's key as a previous one may write: every secret stays readable.
    const next = new Store(transportOf(memory), {
      namespace: memory.namespace,
      maxValueBytes: 16384,
      cipher: new SecretCipher(randomBytes(32), [rightBytes]),
    });
    const saved = await next.forUser(dave.user).saveSettings({ secrets: { retell_api_key: 'rk-next' } });
    expect(saved.secretNames).toEqual(['OPENAI_API_KEY', 'retell_api_key']);
  });
});
