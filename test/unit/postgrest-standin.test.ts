import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  NoRealtimeTransport,
  PostgrestStandin,
  postgrestErrors,
  prepareSupabaseLikeDatabase,
  statusForSqlState,
} from '../support/postgrest-standin.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

// The stand-in is checked through the real supabase-js client only: what matters is what
// `supabase.rpc()` hands back, not what our fetch returns on the wire.

const USER_A = '00000000-0000-4000-8000-00000000000a';
const USER_B = '00000000-0000-4000-8000-00000000000b';

const FIXTURES = `
create table public.items (id serial primary key, name text not null unique, owner uuid);
alter table public.items enable row level security;
create policy items_own on public.items for all to authenticated
  using (owner = (select auth.uid())) with check (owner = (select auth.uid()));

create function public.add_numbers(a integer, b integer default 10) returns integer
  language sql immutable as $$ select a + b $$;
create function public.big_number() returns bigint language sql immutable as $$ select 5000000000::bigint $$;
create function public.fixed_time() returns timestamptz
  language sql immutable as $$ select '2024-05-01 12:34:56.789+00'::timestamptz $$;
create function public.nothing() returns text language sql immutable as $$ select null::text $$;
create function public.echo_args(p_id uuid, p_text text, p_n integer, p_doc jsonb, p_tags text[]) returns jsonb
  language sql stable as $$
    select jsonb_build_object('id', p_id, 'text', p_text, 'n', p_n, 'doc', p_doc, 'tags', to_jsonb(p_tags),
      'types', jsonb_build_array(pg_typeof(p_id)::text, pg_typeof(p_text)::text, pg_typeof(p_n)::text,
                                 pg_typeof(p_doc)::text, pg_typeof(p_tags)::text))
  $$;
create function public.whoami() returns jsonb language sql stable as $$
  select jsonb_build_object('current_user', current_user, 'uid', auth.uid(), 'role', auth.role(), 'jwt', auth.jwt())
$$;
create function public.add_item(p_name text, p_owner uuid default null) returns public.items
  language sql as $$ insert into public.items (name, owner) values (p_name, coalesce(p_owner, auth.uid())) returning * $$;
create function public.list_items() returns setof public.items
  language sql stable as $$ select * from public.items order by id $$;
create function public.item_names(p_prefix text) returns table (name text, len integer)
  language sql stable as $$ select name, length(name) from public.items where name like p_prefix || '%' order by name $$;
create function public.touch(p_name text) returns void
  language sql as $$ update public.items set name = name where name = p_name $$;
create function public.fail_custom() returns void language plpgsql as $$
begin
  raise exception 'custom failure' using detail = 'some detail', hint = 'some hint';
end $$;
-- A STABLE function runs in a READ ONLY transaction under PostgREST, so a write below it fails.
create function public.volatile_insert() returns integer
  language sql as $$ insert into public.items (name) values ('from-stable') returning id $$;
create function public.stable_writer() returns integer language sql stable as $$ select public.volatile_insert() $$;
create function public.huge() returns bigint language sql immutable as $$ select 9007199254740993::bigint $$;
create function public.teapot() returns void language plpgsql as $$
begin
  raise sqlstate 'PGRST' using
    message = '{"code":"TEA01","message":"I am a teapot","details":"short and stout","hint":null}',
    detail = '{"status":418,"headers":{"X-Teapot":"yes"}}';
end $$;
create function public.anon_forbidden() returns text language sql as $$ select 'secret' $$;
revoke execute on function public.anon_forbidden() from public, anon;
create function public.users_forbidden() returns text language sql as $$ select 'secret' $$;
revoke execute on function public.users_forbidden() from public, anon, authenticated;
`;

let db: TestDatabase;
let standin: PostgrestStandin;
let service: SupabaseClient;
let anon: SupabaseClient;

async function sql(text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

function clientWith(key: string, options: { accessToken?: string; timeout?: number } = {}): SupabaseClient {
  const { accessToken, timeout } = options;
  return createClient(standin.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { fetch: standin.fetch },
    // Without it createClient() throws on Node 20 (no global WebSocket for realtime).
    realtime: { transport: NoRealtimeTransport },
    ...(accessToken !== undefined ? { accessToken: async () => accessToken } : {}),
    ...(timeout !== undefined ? { db: { timeout } } : {}),
  });
}

async function userClient(sub: string): Promise<SupabaseClient> {
  return clientWith(standin.anonKey, { accessToken: await standin.userToken(sub) });
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  db = await createTestDatabase('postgrest');
  await prepareSupabaseLikeDatabase(db.url);
  await sql(FIXTURES);
  standin = new PostgrestStandin({ databaseUrl: db.url });
  await standin.start();
  service = clientWith(standin.serviceRoleKey);
  anon = clientWith(standin.anonKey);
});

afterAll(async () => {
  await standin?.stop();
  await db?.drop();
});

beforeEach(() => {
  standin.clear();
});

describe('results and arguments', () => {
  it('returns scalars as JSON values, with defaults for absent arguments', async () => {
    expect(await service.rpc('add_numbers', { a: 1, b: 2 })).toMatchObject({ data: 3, error: null, status: 200 });
    expect((await service.rpc('add_numbers', { a: 5 })).data).toBe(15);
    expect((await service.rpc('big_number')).data).toBe(5_000_000_000);
    expect((await service.rpc('fixed_time')).data).toBe('2024-05-01T12:34:56.789+00:00');
    expect(await service.rpc('nothing')).toMatchObject({ data: null, error: null, status: 200 });
  });

  it('passes the body through untouched, so a bigint is exact on the wire (JSON.parse then rounds it)', async () => {
    const response = await standin.fetch(`${standin.url}/rest/v1/rpc/huge`, {
      method: 'POST',
      headers: { apikey: standin.serviceRoleKey, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await response.text()).toBe('9007199254740993');
    expect((await service.rpc('huge')).data).toBe(9007199254740992);
  });

  it('casts each argument to its declared type (uuid, text, integer, jsonb, text[])', async () => {
    const doc = { nested: { list: [1, 'two', null] }, flag: true };
    const { data, error } = await service.rpc('echo_args', {
      p_id: USER_A,
      p_text: 'héllo "quoted"',
      p_n: 42,
      p_doc: doc,
      p_tags: ['a', 'b,c', 'd"e'],
    });
    expect(error).toBeNull();
    expect(data).toEqual({
      id: USER_A,
      text: 'héllo "quoted"',
      n: 42,
      doc,
      tags: ['a', 'b,c', 'd"e'],
      types: ['uuid', 'text', 'integer', 'jsonb', 'text[]'],
    });
  });

  it('returns a composite as an object, setof and table() as arrays of rows, void as 204', async () => {
    const added = await service.rpc('add_item', { p_name: 'apple', p_owner: USER_A });
    expect(added).toMatchObject({
      error: null,
      status: 200,
      data: { id: expect.any(Number), name: 'apple', owner: USER_A },
    });
    await service.rpc('add_item', { p_name: 'apricot', p_owner: USER_B });

    const listed = await service.rpc('list_items');
    expect(listed.error).toBeNull();
    expect((listed.data as Array<{ name: string }>).map((r) => r.name)).toEqual(
      expect.arrayContaining(['apple', 'apricot']),
    );

    expect((await service.rpc('item_names', { p_prefix: 'ap' })).data).toEqual([
      { name: 'apple', len: 5 },
      { name: 'apricot', len: 7 },
    ]);
    expect((await service.rpc('item_names', { p_prefix: 'zzz' })).data).toEqual([]);

    // supabase-js turns PostgREST's 204 for a void function into data: null.
    expect(await service.rpc('touch', { p_name: 'apple' })).toMatchObject({ data: null, error: null, status: 204 });

    // GET (rpc(..., { get: true })) sends the arguments as query parameters, as text.
    expect(await service.rpc('add_numbers', { a: 2, b: 3 }, { get: true })).toMatchObject({ data: 5, status: 200 });
    expect(await service.rpc('add_numbers', { a: 2 }, { head: true })).toMatchObject({
      data: null,
      error: null,
      status: 200,
    });

    // .single() asks for application/vnd.pgrst.object+json.
    expect((await service.rpc('item_names', { p_prefix: 'apr' }).single()).data).toEqual({ name: 'apricot', len: 7 });
    const many = await service.rpc('item_names', { p_prefix: 'ap' }).single();
    expect(many).toMatchObject({ status: 406, error: { code: 'PGRST116', details: 'The result contains 2 rows' } });
  });
});

describe('roles and claims', () => {
  it('runs as the role in the JWT, with its claims visible to auth.uid()/auth.role()/auth.jwt()', async () => {
    const asService = await service.rpc('whoami');
    expect(asService.data).toMatchObject({
      current_user: 'service_role',
      uid: null,
      role: 'service_role',
      jwt: { iss: 'supabase' },
    });

    expect((await anon.rpc('whoami')).data).toMatchObject({ current_user: 'anon', uid: null, role: 'anon' });

    const user = await userClient(USER_A);
    expect((await user.rpc('whoami')).data).toMatchObject({
      current_user: 'authenticated',
      uid: USER_A,
      role: 'authenticated',
      jwt: { sub: USER_A, aud: 'authenticated' },
    });
    expect(standin.requests.map((r) => r.role)).toEqual(['service_role', 'anon', 'authenticated']);
  });

  it('applies RLS to user tokens and lets service_role bypass it', async () => {
    const a = await userClient(USER_A);
    const b = await userClient(USER_B);
    expect((await a.rpc('add_item', { p_name: 'a-only' })).data).toMatchObject({ owner: USER_A });
    const seenByB = (await b.rpc('list_items')).data as Array<{ name: string }>;
    expect(seenByB.map((r) => r.name)).not.toContain('a-only');
    const seenByService = (await service.rpc('list_items')).data as Array<{ name: string }>;
    expect(seenByService.map((r) => r.name)).toContain('a-only');
    // The policy's WITH CHECK rejects a row for someone else: 42501 as an authenticated role → 403.
    const forged = await b.rpc('add_item', { p_name: 'forged', p_owner: USER_A });
    expect(forged).toMatchObject({ status: 403, error: { code: '42501' } });
  });

  it('answers 401 PGRST301 for a bad signature or an expired token', async () => {
    const other = new PostgrestStandin({
      databaseUrl: db.url,
      jwtSecret: 'another-secret-another-secret-another-secret',
    });
    const forged = await other.signJwt({ role: 'service_role' });
    const badSignature = await clientWith(forged).rpc('whoami');
    expect(badSignature).toMatchObject({
      data: null,
      status: 401,
      error: { code: 'PGRST301', message: 'JWT cryptographic operation failed', details: null, hint: null },
    });

    const expired = await standin.signJwt({
      role: 'authenticated',
      sub: USER_A,
      exp: Math.floor(Date.now() / 1000) - 3600,
    });
    expect(await clientWith(standin.anonKey, { accessToken: expired }).rpc('whoami')).toMatchObject({
      status: 401,
      error: { code: 'PGRST301', message: 'JWT expired' },
    });
    expect(standin.requests.map((r) => [r.status, r.role])).toEqual([
      [401, null],
      [401, null],
    ]);
  });

  it('maps permission denied to 401 for anon and 403 for authenticated', async () => {
    const user = await userClient(USER_A);
    const anonDenied = await anon.rpc('anon_forbidden');
    expect(anonDenied).toMatchObject({
      status: 401,
      error: { code: '42501', message: 'permission denied for function anon_forbidden' },
    });
    expect((await user.rpc('anon_forbidden')).data).toBe('secret');
    expect(await user.rpc('users_forbidden')).toMatchObject({ status: 403, error: { code: '42501' } });
    expect((await service.rpc('users_forbidden')).data).toBe('secret');
  });
});

describe('errors', () => {
  it('answers 404 PGRST202 for a function or argument names not in the schema cache', async () => {
    const missing = await service.rpc('no_such_function', { p_b: 1, p_a: 2 });
    expect(missing.status).toBe(404);
    expect(missing.error).toEqual({
      code: 'PGRST202',
      details:
        'Searched for the function public.no_such_function with parameters p_a, p_b or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
      hint: null,
      message: 'Could not find the function public.no_such_function(p_a, p_b) in the schema cache',
    });

    const wrongArgs = await service.rpc('add_numbers', { x: 1 });
    expect(wrongArgs).toMatchObject({
      status: 404,
      error: {
        code: 'PGRST202',
        message: 'Could not find the function public.add_numbers(x) in the schema cache',
        hint: 'Perhaps you meant to call the function public.add_numbers(a, b)',
      },
    });
  });

  it('maps a unique violation to 409 with code 23505 and keeps the details', async () => {
    expect((await service.rpc('add_item', { p_name: 'dup' })).error).toBeNull();
    const second = await service.rpc('add_item', { p_name: 'dup' });
    expect(second).toMatchObject({
      data: null,
      status: 409,
      error: {
        code: '23505',
        message: 'duplicate key value violates unique constraint "items_name_key"',
        details: 'Key (name)=(dup) already exists.',
        hint: null,
      },
    });
  });

  it('keeps details and hint of a RAISE (400) and runs STABLE functions read-only (405)', async () => {
    expect(await service.rpc('fail_custom')).toMatchObject({
      status: 400,
      error: { code: 'P0001', message: 'custom failure', details: 'some detail', hint: 'some hint' },
    });
    expect(await service.rpc('stable_writer')).toMatchObject({ status: 405, error: { code: '25006' } });
    expect(await service.rpc('add_numbers', { a: 'not a number' })).toMatchObject({
      status: 400,
      error: { code: '22P02' },
    });
  });

  it("honours RAISE SQLSTATE 'PGRST' with a JSON message and detail", async () => {
    expect(await service.rpc('teapot')).toMatchObject({
      status: 418,
      error: { code: 'TEA01', message: 'I am a teapot', details: 'short and stout', hint: null },
    });
  });

  it("follows PostgREST's SQLSTATE table", () => {
    expect(statusForSqlState('23503')).toBe(409);
    expect(statusForSqlState('42501', '', false)).toBe(401);
    expect(statusForSqlState('42883')).toBe(404);
    expect(statusForSqlState('42P01')).toBe(404);
    expect(statusForSqlState('57014')).toBe(500);
    expect(statusForSqlState('08006')).toBe(503);
    expect(statusForSqlState('53300')).toBe(503);
    expect(statusForSqlState('53400')).toBe(500);
    expect(statusForSqlState('40001')).toBe(500);
    expect(statusForSqlState('PT418')).toBe(418);
    expect(statusForSqlState('22023', 'role "x" does not exist')).toBe(401);
    expect(statusForSqlState('23514')).toBe(400);
  });

  it('answers 404 for anything but RPC, and rejects other origins like a failed connection', async () => {
    const table = await service.from('items').select('*');
    expect(table).toMatchObject({ status: 404, error: { code: 'STANDIN404' } });
    await expect(standin.fetch('https://example.com/rest/v1/rpc/whoami', { method: 'POST' })).rejects.toThrow(
      TypeError,
    );
  });
});

describe('schema cache', () => {
  it('sees a new function only after NOTIFY pgrst', async () => {
    await sql(`create function public.late_fn() returns text language sql as $$ select 'late' $$`);
    expect(await service.rpc('late_fn')).toMatchObject({ status: 404, error: { code: 'PGRST202' } });
    const reloads = standin.reloads;
    await sql(`notify pgrst, 'reload schema'`);
    await eventually(async () => (await service.rpc('late_fn')).data === 'late');
    expect(standin.reloads).toBeGreaterThan(reloads);
  });

  it('stays stale while frozen, and reloads on an empty payload once thawed', async () => {
    standin.freezeSchemaCache(true);
    try {
      await sql(`create function public.frozen_fn() returns integer language sql as $$ select 7 $$`);
      const ignored = standin.ignoredNotifications;
      await sql(`notify pgrst, 'reload schema'`);
      await eventually(async () => standin.ignoredNotifications > ignored);
      expect(await service.rpc('frozen_fn')).toMatchObject({ status: 404, error: { code: 'PGRST202' } });
    } finally {
      standin.freezeSchemaCache(false);
    }
    await sql(`notify pgrst`);
    await eventually(async () => (await service.rpc('frozen_fn')).data === 7);
  });
});

describe('fault injection and the request log', () => {
  it('records every request', async () => {
    await service.rpc('add_numbers', { a: 1 });
    await anon.rpc('no_such_function');
    expect(standin.requests).toEqual([
      {
        method: 'POST',
        path: '/rest/v1/rpc/add_numbers',
        fn: 'add_numbers',
        role: 'service_role',
        args: { a: 1 },
        status: 200,
      },
      {
        method: 'POST',
        path: '/rest/v1/rpc/no_such_function',
        fn: 'no_such_function',
        role: 'anon',
        args: {},
        status: 404,
      },
    ]);
  });

  it('failNext replays documented PostgREST bodies instead of running the call', async () => {
    standin.failNext('add_item', postgrestErrors.columnNotFound('owner', 'items'));
    const r1 = await service.rpc('add_item', { p_name: 'never-inserted' });
    expect(r1).toMatchObject({
      data: null,
      status: 400,
      error: { code: 'PGRST204', message: "Could not find the 'owner' column of 'items' in the schema cache" },
    });

    standin.failNext('*', postgrestErrors.tableNotFound('public.memories'), 2);
    expect((await service.rpc('whoami')).error).toMatchObject({ code: 'PGRST205' });
    expect((await service.rpc('add_numbers', { a: 1 })).status).toBe(404);
    expect((await service.rpc('add_numbers', { a: 1 })).data).toBe(11);

    standin.failNext('add_item', postgrestErrors.uniqueViolation('items_name_key', 'Key (name)=(x) already exists.'));
    expect(await service.rpc('add_item', { p_name: 'x' })).toMatchObject({ status: 409, error: { code: '23505' } });
    standin.failNext('whoami', postgrestErrors.permissionDenied('table memories'));
    expect(await service.rpc('whoami')).toMatchObject({ status: 403, error: { code: '42501' } });

    expect(standin.requests.map((r) => r.injected ?? '-')).toEqual([
      'response',
      'response',
      'response',
      '-',
      'response',
      'response',
    ]);
    expect((await service.rpc('list_items')).data).not.toContainEqual(
      expect.objectContaining({ name: 'never-inserted' }),
    );
  });

  it('failNetwork makes fetch reject; supabase-js reports it with status 0', async () => {
    standin.failNetwork('whoami');
    const failed = await service.rpc('whoami');
    expect(failed).toMatchObject({ data: null, status: 0, error: { message: 'TypeError: fetch failed', code: '' } });
    expect(failed.error?.details).toContain('ECONNREFUSED');
    expect((await service.rpc('whoami')).status).toBe(200); // POST is not retried by supabase-js; one failure only
    expect(standin.requests.map((r) => [r.injected ?? '-', r.status])).toEqual([
      ['network', 0],
      ['-', 200],
    ]);
  });

  it('delayNext with a client timeout: the client gives up, the write still commits', async () => {
    const impatient = clientWith(standin.serviceRoleKey, { timeout: 100 });
    standin.delayNext('add_item', 400);
    const timedOut = await impatient.rpc('add_item', { p_name: 'slow-but-committed' });
    expect(timedOut).toMatchObject({
      data: null,
      status: 0,
      error: { code: '', hint: expect.stringContaining('aborted') },
    });
    await eventually(async () => standin.requests[0]?.status === 200);
    expect(standin.requests[0]).toMatchObject({ fn: 'add_item', clientAborted: true, status: 200 });
    const names = ((await service.rpc('list_items')).data as Array<{ name: string }>).map((r) => r.name);
    expect(names).toContain('slow-but-committed');
  });
});

describe('aborts', () => {
  it('AbortSignal.timeout: fetch rejects with its TimeoutError, which supabase-js does not call an abort', async () => {
    standin.delayNext('whoami', 300);
    const r = await service.rpc('whoami').abortSignal(AbortSignal.timeout(50));
    expect(r).toMatchObject({ data: null, status: 0, error: { code: '', hint: '' } });
    expect(r.error?.message).toBe('TimeoutError: The operation was aborted due to timeout');
  });
});

describe('prepareSupabaseLikeDatabase', () => {
  it('is idempotent and safe to run from several suites at once', async () => {
    const others = await Promise.all([createTestDatabase('prep'), createTestDatabase('prep')]);
    try {
      await Promise.all(
        [...others, ...others]
          .map((d) => prepareSupabaseLikeDatabase(d.url))
          .concat(prepareSupabaseLikeDatabase(db.url)),
      );
      const roles = await sql(`select rolname, rolbypassrls, rolcanlogin from pg_roles
                               where rolname in ('anon', 'authenticated', 'service_role') order by rolname`);
      expect(roles.rows).toEqual([
        { rolname: 'anon', rolbypassrls: false, rolcanlogin: false },
        { rolname: 'authenticated', rolbypassrls: false, rolcanlogin: false },
        { rolname: 'service_role', rolbypassrls: true, rolcanlogin: false },
      ]);
    } finally {
      await Promise.all(others.map((d) => d.drop()));
    }
  });
});
