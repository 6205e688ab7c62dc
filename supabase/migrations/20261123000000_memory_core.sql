-- livekit-user-memory: users and their memories.
-- Idempotent on purpose: `lk-memory migrate` tracks versions in memory_schema_migrations, the
-- Supabase CLI tracks them in its own table, and either may meet a schema the other applied.

-- Users are keyed by the UUIDv5 of their LiveKit identity. There is deliberately NO foreign key
-- to auth.users: callers who never signed up through Supabase Auth (SIP callers, agents' test
-- identities) must still be provisioned, and a failed insert must never fall back to a shared id.
create table if not exists public.memory_users (
  id uuid primary key,
  identity text not null unique check (length(identity) > 0),
  created_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  -- Sessions started. 0 for a user provisioned without a session (the CLI's store, an admin).
  session_count bigint not null default 0 check (session_count >= 0)
);

-- Orders writes: "most recently updated" must not depend on the clock's resolution (PGlite's
-- now() can return the same instant for consecutive writes).
create sequence if not exists public.memories_write_seq;

create table if not exists public.memories (
  user_id uuid not null references public.memory_users (id) on delete cascade,
  category text not null check (category ~ '^[A-Z][A-Z0-9_]{0,63}$'),
  key text not null check (char_length(key) between 1 and 256),
  value text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  write_seq bigint not null default nextval('public.memories_write_seq'),
  primary key (user_id, category, key)
);

-- Session start reads a user's most recently updated memories.
create index if not exists memories_user_recent_idx on public.memories (user_id, write_seq desc);

-- One round trip per operation: every data operation is one function call, so the PostgreSQL,
-- embedded and Supabase (RPC) transports all send exactly one statement, and none depends on
-- PostgREST's cache of table columns. Every function takes the user id first and filters on it
-- with equality; none matches identities or labels by pattern.

-- Provision the user if new (idempotent and safe under concurrency: ON CONFLICT serialises on the
-- row), count the session and return the profile with its most recent memories.
-- session_count = 1 after the increment means this is the user's first session; exactly one
-- concurrent caller can see it, because the row lock orders the increments.
create or replace function public.memory_start_session(p_user_id uuid, p_identity text, p_memory_limit integer)
returns jsonb
language plpgsql
as $$
declare
  u public.memory_users;
  recent jsonb;
begin
  -- Racing first sessions of one new user must meet in the upsert below. Without this lock the
  -- loser can fail instead: ON CONFLICT (id) covers the primary key only, and the insert also
  -- waits on the identity's unique index, where PostgreSQL raises 23505 once the winner commits.
  -- The lock is per identity (and transaction), so different users never wait for each other.
  perform pg_advisory_xact_lock(1818979693, hashtext(p_identity));
  insert into public.memory_users as mu (id, identity, session_count)
  values (p_user_id, p_identity, 1)
  on conflict (id) do update
    set session_count = mu.session_count + 1, last_seen_at = now()
  returning * into u;

  -- A user id is derived from its identity; a row whose identity differs is a namespace mix-up or
  -- a forged id, and must never be served as this caller's profile.
  if u.identity <> p_identity then
    raise exception 'user id % belongs to another identity', p_user_id using errcode = 'LKM01';
  end if;

  select coalesce(jsonb_agg(jsonb_build_object(
           'category', m.category, 'key', m.key, 'value', m.value,
           'created_at', m.created_at, 'updated_at', m.updated_at)
         order by m.write_seq desc), '[]'::jsonb)
    into recent
    from (select * from public.memories
           where user_id = p_user_id
           order by write_seq desc
           limit greatest(p_memory_limit, 0)) m;

  return jsonb_build_object(
    'user', jsonb_build_object(
      'id', u.id, 'identity', u.identity, 'created_at', u.created_at,
      'last_seen_at', u.last_seen_at, 'session_count', u.session_count),
    'first_session', u.session_count = 1,
    'memories', recent);
end;
$$;

-- Provision without starting a session (administrative writes such as `lk-memory store`).
create or replace function public.memory_provision(p_user_id uuid, p_identity text)
returns jsonb
language plpgsql
as $$
declare
  u public.memory_users;
begin
  perform pg_advisory_xact_lock(1818979693, hashtext(p_identity)); -- see memory_start_session
  insert into public.memory_users (id, identity) values (p_user_id, p_identity)
  on conflict (id) do nothing;
  select * into u from public.memory_users where id = p_user_id;
  if u.identity <> p_identity then
    raise exception 'user id % belongs to another identity', p_user_id using errcode = 'LKM01';
  end if;
  return jsonb_build_object(
    'id', u.id, 'identity', u.identity, 'created_at', u.created_at,
    'last_seen_at', u.last_seen_at, 'session_count', u.session_count);
end;
$$;

-- PL/pgSQL rather than SQL: its plan is cached per connection (a SQL-language function is planned
-- on every call before PostgreSQL 18), and it returns only the write's time instead of echoing
-- the value back. Measured with `npm run bench`.
create or replace function public.memory_store(p_user_id uuid, p_category text, p_key text, p_value text)
returns timestamptz
language plpgsql
as $$
declare
  written timestamptz;
begin
  insert into public.memories as m (user_id, category, key, value)
  values (p_user_id, p_category, p_key, p_value)
  on conflict (user_id, category, key) do update
    set value = excluded.value, updated_at = now(), write_seq = nextval('public.memories_write_seq')
  returning m.updated_at into written;
  return written;
end;
$$;

create or replace function public.memory_retrieve(p_user_id uuid, p_category text, p_key text)
returns text
language sql
stable
as $$
  select value from public.memories
   where user_id = p_user_id and category = p_category and key = p_key;
$$;

create or replace function public.memory_list(p_user_id uuid, p_category text, p_limit integer)
returns setof public.memories
language sql
stable
as $$
  select * from public.memories
   where user_id = p_user_id and (p_category is null or category = p_category)
   order by write_seq desc
   limit p_limit;
$$;

create or replace function public.memory_forget(p_user_id uuid, p_category text, p_key text)
returns boolean
language sql
as $$
  with gone as (
    delete from public.memories
     where user_id = p_user_id and category = p_category and key = p_key
    returning 1)
  select exists (select 1 from gone);
$$;

create or replace function public.memory_forget_all(p_user_id uuid)
returns bigint
language sql
as $$
  with gone as (delete from public.memories where user_id = p_user_id returning 1)
  select count(*) from gone;
$$;

-- Supabase: make PostgREST see the new functions now instead of after its next cache refresh.
-- On plain PostgreSQL and PGlite nobody listens and this is a no-op.
notify pgrst, 'reload schema';
