import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryError, MemoryStore, openMemory, type MemoryErrorCode } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { createSupabaseTransport } from '../../memory/transports/supabase.js';
import {
  errorBody,
  PostgrestStandin,
  postgrestErrors,
  prepareSupabaseLikeDatabase,
} from '../support/postgrest-standin.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

async function codeOf(run: () => Promise<unknown>): Promise<{ code: MemoryErrorCode | 'none'; message: string }> {
  try {
    await run();
    return { code: 'none', message: '' };
  } catch (error) {
    if (error instanceof MemoryError) return { code: error.code, message: error.message };
    throw error;
  }
}

/** PostgREST's documented error bodies, replayed through real supabase-js, become typed errors. */
describe('Supabase transport: errors that say what to do', () => {
  let db: TestDatabase;
  let standin: PostgrestStandin;
  let memory: MemoryStore;

  beforeAll(async () => {
    db = await createTestDatabase('sberr');
    await prepareSupabaseLikeDatabase(db.url);
    await (await openMemory({ env: {}, databaseUrl: db.url })).close(); // migrate, as `supabase db push`
    standin = new PostgrestStandin({ databaseUrl: db.url });
    await standin.start();
    memory = new MemoryStore(
      createSupabaseTransport({
        url: standin.url,
        serviceRoleKey: standin.serviceRoleKey,
        fetch: standin.fetch,
        timeoutMs: 300,
        reloadWaitMs: 50,
      }),
      { namespace: '6ba7b810-9dad-11d1-80b4-00c04fd430c8', maxValueBytes: 16384 },
    );
    await memory.startSession('alice@example.com');
  });
  afterAll(async () => {
    await memory?.close();
    await standin?.stop();
    await db?.drop();
  });

  const alice = () => memory.forIdentity('alice@example.com');
  const calls = (fn: string) => standin.requests.filter((r) => r.fn === fn).length;

  it('a stale schema cache (PGRST202) gets one reload through an RPC and one retry', async () => {
    standin.clear();
    standin.failNext('memory_retrieve', {
      status: 404,
      body: errorBody(
        'PGRST202',
        'Could not find the function public.memory_retrieve(p_category, p_key, p_user_id) in the schema cache',
      ),
    });
    expect(await alice().retrieve('FACT', 'k')).toBeNull();
    expect(calls('memory_reload_schema')).toBe(1);
    expect(calls('memory_retrieve')).toBe(2);
  });

  for (const [name, response] of [
    ['PGRST204', postgrestErrors.columnNotFound('value', 'memories')],
    ['PGRST205', postgrestErrors.tableNotFound('public.memories')],
  ] as const) {
    it(`${name} that outlives the reload is SCHEMA_CACHE_STALE, telling to apply the migrations and NOTIFY`, async () => {
      standin.clear();
      standin.failNext('memory_store', response, 2);
      const { code, message } = await codeOf(() => alice().store('FACT', 'k', 'v'));
      expect(code).toBe('SCHEMA_CACHE_STALE');
      expect(message).toContain(name);
      expect(message).toMatch(/supabase db push/);
      expect(message).toMatch(/NOTIFY pgrst, 'reload schema'/);
      expect(calls('memory_reload_schema')).toBe(1);
      expect(calls('memory_store')).toBe(2);
    });
  }

  it('maps 23505 / 409, 42501, network failures and timeouts to their own codes', async () => {
    standin.failNext('memory_store', postgrestErrors.uniqueViolation('memories_pkey'));
    expect((await codeOf(() => alice().store('FACT', 'k', 'v'))).code).toBe('CONFLICT');
    standin.failNext('memory_store', postgrestErrors.permissionDenied('function memory_store'));
    expect((await codeOf(() => alice().store('FACT', 'k', 'v'))).code).toBe('PERMISSION_DENIED');
    standin.failNetwork('memory_store');
    expect((await codeOf(() => alice().store('FACT', 'k', 'v'))).code).toBe('BACKEND_UNAVAILABLE');
    standin.delayNext('memory_retrieve', 1500);
    expect((await codeOf(() => alice().retrieve('FACT', 'k'))).code).toBe('TIMEOUT');
    // And a real one, not injected: the FK refuses a store for a user that does not exist.
    expect((await codeOf(() => memory.forIdentity('ghost@example.com').store('FACT', 'k', 'v'))).code).toBe(
      'USER_NOT_PROVISIONED',
    );
  });

  it('the anon key is refused (42501 from the revoked functions) with a hint about the service_role key', async () => {
    const anon = new MemoryStore(
      createSupabaseTransport({ url: standin.url, serviceRoleKey: standin.anonKey, fetch: standin.fetch }),
      {
        namespace: '6ba7b810-9dad-11d1-80b4-00c04fd430c8',
        maxValueBytes: 16384,
      },
    );
    const { code, message } = await codeOf(() => anon.forIdentity('alice@example.com').retrieve('FACT', 'k'));
    expect(code).toBe('PERMISSION_DENIED');
    expect(message).toContain('service_role');
    expect((await codeOf(() => anon.startSession('mallory@example.com'))).code).toBe('PROVISIONING_FAILED');
  });
});

describe('Supabase transport: migrations and the schema cache', () => {
  const waitFor = async (done: () => boolean) => {
    for (let i = 0; i < 100 && !done(); i += 1) await new Promise((r) => setTimeout(r, 20));
  };

  it('an unmigrated project is refused on open; the NOTIFY at the end of the migrations makes PostgREST see them', async () => {
    const db = await createTestDatabase('sbcache');
    await prepareSupabaseLikeDatabase(db.url);
    const standin = new PostgrestStandin({ databaseUrl: db.url });
    await standin.start();
    const supabase = { url: standin.url, serviceRoleKey: standin.serviceRoleKey, fetch: standin.fetch };
    try {
      const refused = await codeOf(() => openMemory({ env: {}, supabase }));
      expect(refused.code).toBe('SCHEMA_NOT_MIGRATED');
      expect(refused.message).toMatch(/supabase db push/);

      const reloads = standin.reloads;
      await (await openMemory({ env: {}, databaseUrl: db.url })).close(); // what `supabase db push` applies
      await waitFor(() => standin.reloads > reloads);
      expect(standin.reloads).toBeGreaterThan(reloads);
      const memory = await openMemory({ env: {}, supabase });
      expect((await memory.startSession('carol@example.com')).firstSession).toBe(true);
      await memory.close();
    } finally {
      await standin.stop();
      await db.drop();
    }
  });

  it('a cache that missed the NOTIFY stays stale until NOTIFY pgrst is sent, as the error message says', async () => {
    const db = await createTestDatabase('sbstale');
    await prepareSupabaseLikeDatabase(db.url);
    const standin = new PostgrestStandin({ databaseUrl: db.url });
    await standin.start();
    const supabase = { url: standin.url, serviceRoleKey: standin.serviceRoleKey, fetch: standin.fetch };
    try {
      standin.freezeSchemaCache(true);
      await (await openMemory({ env: {}, databaseUrl: db.url })).close();
      expect((await codeOf(() => openMemory({ env: {}, supabase }))).code).toBe('SCHEMA_NOT_MIGRATED');

      standin.freezeSchemaCache(false);
      const reloads = standin.reloads;
      const sql = await openMemory({ env: {}, databaseUrl: db.url, migrate: false });
      await transportOf(sql).exec("notify pgrst, 'reload schema'");
      await sql.close();
      await waitFor(() => standin.reloads > reloads);
      const memory = await openMemory({ env: {}, supabase });
      expect((await memory.startSession('dave@example.com')).user.identity).toBe('dave@example.com');
      await memory.close();
    } finally {
      await standin.stop();
      await db.drop();
    }
  });
});
