-- livekit-user-memory: the whole schema, in one migration.
--
-- It replaces three earlier, never released migrations (20261123000000_memory_core,
-- 20261124000000_settings_rls_audit, 20261125000000_write_clocks). A database that applied them
-- runs this file too: `lk-memory migrate` knows that this version supersedes them (see
-- SUPERSEDED_BY_BASELINE in memory/migrations/index.ts) and drops their tracking rows. So every
-- statement here is idempotent and also correct over the older schema: `if not exists`, `add
-- column if not exists`, a `drop function if exists` for every overload that ever existed, `create
-- or replace`, and policies dropped and created again. The Supabase CLI (`supabase db push`) and
-- `lk-memory migrate` track versions separately, and either may meet a schema the other applied.
--
-- Functions: every one runs with `set search_path = ''` and names everything it uses with its
-- schema. pg_catalog is still searched implicitly (first), so built-ins resolve as usual, but
-- nothing that another application, or a role allowed to create objects in public, puts there can
-- shadow an operator, a function or a table inside ours. The SECURITY DEFINER ones need this; the
-- others get it too so that no function's meaning depends on the caller's search_path (PostgREST
-- sets 'public, extensions', a psql session whatever it likes).
--
-- Privileges: on Supabase, `anon`, `authenticated` and `service_role` receive ALL on every new
-- table, sequence and function in public through default privileges. Everything is revoked at the
-- end of this file and granted back narrowly, by name: see the last three sections.

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- Which migrations `lk-memory migrate` applied. memory/migrations/index.ts creates it before
-- running any migration; it is created here as well so that a schema pushed by the Supabase CLI
-- has it locked down like every other table (a writable checksum column would let an anonymous
-- caller make every openMemory() fail).
create table if not exists public.memory_schema_migrations (
  version text primary key,
  name text not null,
  checksum text not null,
  applied_at timestamptz not null default now()
);

-- Users are keyed by the UUIDv5 of their LiveKit identity. There is deliberately NO foreign key
-- to auth.users: callers who never signed up through Supabase Auth (SIP callers, agents' test
-- identities) must still be provisioned, and a failed insert must never fall back to a shared id.
-- Linking to a Supabase Auth user is optional and explicit (`lk-memory link`, auth_user_id).
create table if not exists public.memory_users (
  id uuid primary key,
  identity text not null unique check (length(identity) > 0),
  created_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  -- Sessions started. 0 for a user provisioned without a session (the CLI's store, an admin).
  session_count bigint not null default 0 check (session_count >= 0),
  auth_user_id uuid
);
-- Separate from the create table: the first legacy schema had no auth_user_id.
alter table public.memory_users add column if not exists auth_user_id uuid;
do $$
begin
  if not exists (select 1 from pg_catalog.pg_constraint
                  where conrelid = 'public.memory_users'::regclass and conname = 'memory_users_auth_user_id_key') then
    alter table public.memory_users add constraint memory_users_auth_user_id_key unique (auth_user_id);
  end if;
end $$;

-- Orders writes: "most recently updated" must not depend on the clock's resolution (PGlite's
-- now() can return the same instant for consecutive writes).
create sequence if not exists public.memories_write_seq;

-- Write clocks: "<15-digit milliseconds>.<10-digit sequence>.<writer>", compared as text (see
-- memory/journal/clock.ts). The server's own clock, for online writes and column defaults.
create or replace function public.memory_server_clock()
returns text
language sql
volatile
set search_path = ''
as $$
  select pg_catalog.lpad(pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint::text, 15, '0')
         || '.0000000000.server'
$$;

-- The smallest clock after c that the server may write: same milliseconds and the next sequence
-- number (or the next millisecond once the sequence is exhausted), writer "server". Online writes
-- take greatest(server clock, clock_after(what is stored)), so they always land after what they
-- replace, however far ahead a writer host's clock ran.
create or replace function public.memory_clock_after(c text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when c is null then null
    when pg_catalog.substr(c, 17, 10)::bigint >= 9999999999
      then pg_catalog.lpad((pg_catalog.substr(c, 1, 15)::bigint + 1)::text, 15, '0') || '.0000000000.server'
    else pg_catalog.substr(c, 1, 15) || '.' || pg_catalog.lpad((pg_catalog.substr(c, 17, 10)::bigint + 1)::text, 10, '0') || '.server'
  end
$$;

create table if not exists public.memories (
  user_id uuid not null references public.memory_users (id) on delete cascade,
  category text not null check (category ~ '^[A-Z][A-Z0-9_]{0,63}$'),
  key text not null check (char_length(key) between 1 and 256),
  value text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  write_seq bigint not null default nextval('public.memories_write_seq'),
  clock text not null default public.memory_server_clock(),
  primary key (user_id, category, key)
);
-- The first legacy schema had no clock: give its rows the clock of their last update.
alter table public.memories add column if not exists clock text;
update public.memories
   set clock = pg_catalog.lpad(floor(extract(epoch from updated_at) * 1000)::bigint::text, 15, '0') || '.0000000000.server'
 where clock is null;
alter table public.memories alter column clock set default public.memory_server_clock();
alter table public.memories alter column clock set not null;

-- Session start reads a user's most recently updated memories.
create index if not exists memories_user_recent_idx on public.memories (user_id, write_seq desc);

-- A deletion's clock, so that an older store replayed from a journal after a newer forget does
-- not bring the value back.
create table if not exists public.memory_tombstones (
  user_id uuid not null references public.memory_users (id) on delete cascade,
  category text not null,
  key text not null,
  clock text not null,
  primary key (user_id, category, key)
);

-- One row per user and tenant. `secrets` maps a name to {"v":1,"kid","iv","ct","tag","at"}:
-- AES-256-GCM ciphertext made by the application; the database never sees a key or a plaintext.
-- config_clock: the clock of the configuration stored.
create table if not exists public.memory_settings (
  user_id uuid not null references public.memory_users (id) on delete cascade,
  tenant_id text not null default 'default' check (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
  config jsonb not null default '{}'::jsonb check (jsonb_typeof(config) = 'object'),
  secrets jsonb not null default '{}'::jsonb check (jsonb_typeof(secrets) = 'object'),
  version bigint not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  config_clock text,
  primary key (user_id, tenant_id)
);
alter table public.memory_settings add column if not exists config_clock text;

-- What happened to whom, when, and which component did it. Never a secret value: secret names
-- only. No foreign key: the log outlives deleted users and records failures for users that were
-- never created.
create table if not exists public.memory_audit_log (
  id bigserial primary key,
  at timestamptz not null default now(),
  user_id uuid,
  tenant_id text,
  action text not null,
  component text not null,
  detail jsonb not null default '{}'::jsonb
);
create index if not exists memory_audit_log_user_idx on public.memory_audit_log (user_id, at desc);

-- ---------------------------------------------------------------------------------------------
-- Functions. One round trip per operation: every data operation is one function call, so the
-- PostgreSQL, embedded and Supabase (RPC) transports all send exactly one statement, and none
-- depends on PostgREST's cache of table columns. Every function takes the user id first and
-- filters on it with equality; none matches identities or labels by pattern.
-- ---------------------------------------------------------------------------------------------

-- Overloads of earlier schemas whose signature or return type changed. Each must go, or callers
-- with named arguments could reach an old one (PostgREST answers PGRST203 for ambiguous calls).
drop function if exists public.memory_start_session(uuid, text, integer);
drop function if exists public.memory_store(uuid, text, text, text);
drop function if exists public.memory_forget(uuid, text, text);
drop function if exists public.memory_save_settings(uuid, text, jsonb, jsonb, jsonb, text);
drop function if exists public.memory_save_settings(uuid, text, jsonb, jsonb, jsonb, text, text);
-- memory_forget(uuid, text, text, text) keeps its arguments but used to return boolean, which
-- `create or replace` cannot change. Dropped only while it is the old one, so that running this
-- file again does not reset the grants of the current one.
do $$
begin
  if exists (select 1 from pg_catalog.pg_proc
              where oid = pg_catalog.to_regprocedure('public.memory_forget(uuid, text, text, text)')
                and prorettype = 'boolean'::regtype) then
    drop function public.memory_forget(uuid, text, text, text);
  end if;
end $$;

-- The schema's version, for clients that cannot read the migrations table (the Supabase CLI keeps
-- its own). Every later migration redefines it.
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261126000000'::text $$;

-- Lets the service role refresh PostgREST's schema cache after a PGRST202/204/205.
create or replace function public.memory_reload_schema()
returns void
language sql
set search_path = ''
as $$ select pg_catalog.pg_notify('pgrst', 'reload schema') $$;

-- Provision the user if new (idempotent and safe under concurrency: ON CONFLICT serialises on the
-- row), count the session and return the profile, its most recent memories (with their clocks, so
-- that pending journal writes merge by clock) and its settings for the tenant.
-- session_count = 1 after the increment means this is the user's first session; exactly one
-- concurrent caller can see it, because the row lock orders the increments.
create or replace function public.memory_start_session(p_user_id uuid, p_identity text, p_memory_limit integer, p_tenant_id text default 'default')
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  u public.memory_users;
  recent jsonb;
  settings jsonb;
begin
  -- Racing first sessions of one new user must meet in the upsert below. Without this lock the
  -- loser can fail instead: ON CONFLICT (id) covers the primary key only, and the insert also
  -- waits on the identity's unique index, where PostgreSQL raises 23505 once the winner commits.
  -- The lock is per identity (and transaction), so different users never wait for each other.
  perform pg_catalog.pg_advisory_xact_lock(1818979693, pg_catalog.hashtext(p_identity));
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
           'created_at', m.created_at, 'updated_at', m.updated_at, 'clock', m.clock)
         order by m.write_seq desc), '[]'::jsonb)
    into recent
    from (select * from public.memories
           where user_id = p_user_id
           order by write_seq desc
           limit greatest(p_memory_limit, 0)) m;

  select jsonb_build_object('tenant_id', s.tenant_id, 'config', s.config, 'secrets', s.secrets,
                            'version', s.version, 'updated_at', s.updated_at)
    into settings
    from public.memory_settings s
   where s.user_id = p_user_id and s.tenant_id = p_tenant_id;

  return jsonb_build_object(
    'user', jsonb_build_object(
      'id', u.id, 'identity', u.identity, 'created_at', u.created_at,
      'last_seen_at', u.last_seen_at, 'session_count', u.session_count),
    'first_session', u.session_count = 1,
    'memories', recent,
    'settings', settings);
end;
$$;

-- Provision without starting a session (administrative writes such as `lk-memory store`).
create or replace function public.memory_provision(p_user_id uuid, p_identity text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  u public.memory_users;
begin
  perform pg_catalog.pg_advisory_xact_lock(1818979693, pg_catalog.hashtext(p_identity)); -- see memory_start_session
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

-- Store a value. p_clock null is an ONLINE write, ordered by the server: it gets a clock after
-- the server's and after anything stored or deleted under this key, and is never refused, so a
-- worker host whose clock runs behind cannot lose an acknowledged write. (The row version that
-- ON CONFLICT sees is the latest committed one, so concurrent online writers serialise there.)
-- A given p_clock is a REPLAY from a journal: applied only when newer than the stored value and
-- than any deletion's tombstone, so an older write never replaces a newer one.
-- Returns {applied, clock, updated_at} (clock: the one stored, or attempted when not applied),
-- plus current_clock (the clock that won) when not applied.
-- One statement on the hot path; PL/pgSQL rather than SQL because its plan is cached per
-- connection (a SQL-language function is planned on every call before PostgreSQL 18).
create or replace function public.memory_store(p_user_id uuid, p_category text, p_key text, p_value text, p_clock text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  written public.memories;
  current text;
  tomb text;
  c text := p_clock;
begin
  -- memory_server_clock() and memory_clock_after() are written out on this hot path: every call of
  -- a function with its own search_path saves and restores the configuration, and a tombstone
  -- read plus one plain upsert plan well (pgbench, synchronous_commit off: 0.15 ms a store, as
  -- before write ordering; 0.39 ms with the helper calls inside one INSERT ... SELECT).
  select ts.clock into tomb from public.memory_tombstones ts
   where ts.user_id = p_user_id and ts.category = p_category and ts.key = p_key;
  if c is null then
    c := pg_catalog.lpad(pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint::text, 15, '0') || '.0000000000.server';
    if tomb >= c then
      c := case when pg_catalog.substr(tomb, 17, 10)::bigint >= 9999999999
                then pg_catalog.lpad((pg_catalog.substr(tomb, 1, 15)::bigint + 1)::text, 15, '0') || '.0000000000.server'
                else pg_catalog.substr(tomb, 1, 15) || '.' || pg_catalog.lpad((pg_catalog.substr(tomb, 17, 10)::bigint + 1)::text, 10, '0') || '.server' end;
    end if;
  elsif tomb >= c then
    -- A replayed write older than a deletion: the deletion stands.
    return jsonb_build_object('applied', false, 'clock', p_clock, 'updated_at', null, 'current_clock', tomb);
  end if;
  insert into public.memories as m (user_id, category, key, value, clock)
  values (p_user_id, p_category, p_key, p_value, c)
  on conflict (user_id, category, key) do update
    set value = excluded.value, updated_at = now(), write_seq = nextval('public.memories_write_seq'),
        clock = case when p_clock is not null then excluded.clock
                     else greatest(excluded.clock,
                       case when pg_catalog.substr(m.clock, 17, 10)::bigint >= 9999999999
                            then pg_catalog.lpad((pg_catalog.substr(m.clock, 1, 15)::bigint + 1)::text, 15, '0') || '.0000000000.server'
                            else pg_catalog.substr(m.clock, 1, 15) || '.' || pg_catalog.lpad((pg_catalog.substr(m.clock, 17, 10)::bigint + 1)::text, 10, '0') || '.server'
                       end) end
    where p_clock is null or m.clock < excluded.clock
  returning * into written;
  if written.user_id is not null then
    return jsonb_build_object('applied', true, 'clock', written.clock, 'updated_at', written.updated_at);
  end if;
  select m.clock into current from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key;
  return jsonb_build_object('applied', false, 'clock', p_clock, 'updated_at', null, 'current_clock', greatest(current, tomb));
end;
$$;

create or replace function public.memory_retrieve(p_user_id uuid, p_category text, p_key text)
returns text
language sql
stable
set search_path = ''
as $$
  select value from public.memories
   where user_id = p_user_id and category = p_category and key = p_key;
$$;

-- A read that also says how new the value is, for merging pending journal entries over it.
create or replace function public.memory_get(p_user_id uuid, p_category text, p_key text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'value', (select m.value from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key),
    'clock', (select m.clock from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key),
    'deleted', (select t.clock from public.memory_tombstones t where t.user_id = p_user_id and t.category = p_category and t.key = p_key));
$$;

create or replace function public.memory_list(p_user_id uuid, p_category text, p_limit integer)
returns setof public.memories
language sql
stable
set search_path = ''
as $$
  select * from public.memories
   where user_id = p_user_id and (p_category is null or category = p_category)
   order by write_seq desc
   limit p_limit;
$$;

-- Delete one memory and leave a tombstone with the deletion's clock. p_clock null (online): the
-- clock is after the server's, the deleted row's and any earlier tombstone's, and the row goes
-- whatever its clock. A given p_clock (replay): only a row older than it is deleted.
-- Returns {existed, clock}: whether a row was deleted, and the deletion's clock.
create or replace function public.memory_forget(p_user_id uuid, p_category text, p_key text, p_clock text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  c text := p_clock;
  existed boolean;
  gone_clock text;
begin
  if c is null then
    c := greatest(public.memory_server_clock(), public.memory_clock_after(
           (select t.clock from public.memory_tombstones t where t.user_id = p_user_id and t.category = p_category and t.key = p_key)));
  end if;
  -- The delete locks the row and sees its latest version, so the clock it returns is the one a
  -- concurrent online store committed last.
  with gone as (
    delete from public.memories m
     where m.user_id = p_user_id and m.category = p_category and m.key = p_key and (p_clock is null or m.clock <= c)
    returning m.clock)
  select count(*) > 0, max(gone.clock) into existed, gone_clock from gone;
  if p_clock is null then
    c := greatest(c, public.memory_clock_after(gone_clock));
  end if;
  insert into public.memory_tombstones as t (user_id, category, key, clock)
  values (p_user_id, p_category, p_key, c)
  on conflict (user_id, category, key) do update set clock = greatest(t.clock, excluded.clock);
  return jsonb_build_object('existed', existed, 'clock', c);
end;
$$;

create or replace function public.memory_forget_all(p_user_id uuid)
returns bigint
language sql
set search_path = ''
as $$
  with gone as (delete from public.memories where user_id = p_user_id returning 1)
  select count(*) from gone;
$$;

create or replace function public.memory_audit(p_user_id uuid, p_tenant_id text, p_action text, p_component text, p_detail jsonb)
returns void
language sql
set search_path = ''
as $$
  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (p_user_id, p_tenant_id, p_action, p_component, coalesce(p_detail, '{}'::jsonb));
$$;

-- Save settings: the upsert names its conflict target (user_id, tenant_id), so saving the same
-- settings again, or from many callers at once, updates the one row instead of failing with a
-- unique violation. A null config keeps the stored one; secrets are merged by name, and
-- p_remove_secrets (a JSON array of names) deletes names.
-- Ordering, as for memories: the configuration follows config_clock; each secret follows the
-- clock stored inside it ("at"), so two writers of different secrets both land. p_clock null is an
-- ONLINE save: its clock is after the server's and the stored configuration's, every incoming
-- secret gets it as "at" (set here, whatever the caller sent), and nothing of it is refused, so a
-- later online save always wins. A given p_clock is a REPLAY: each part lands only if newer.
-- Returns {tenant_id, config, secrets, version, updated_at, clock}.
-- p_key_ids: the key ids the writer can decrypt. A save that would leave the row holding a secret
-- under any other key is refused (LKM02): with a wrong MEMORY_ENCRYPTION_KEY, adding one secret
-- would otherwise leave a row whose secrets no single configuration can read.
create or replace function public.memory_save_settings(
  p_user_id uuid, p_tenant_id text, p_config jsonb, p_secrets jsonb, p_remove_secrets jsonb, p_component text, p_clock text default null,
  p_key_ids text[] default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  c text := p_clock;
  online boolean := p_clock is null;
  incoming jsonb := coalesce(p_secrets, '{}'::jsonb);
  removed text[] := coalesce((select array_agg(x) from jsonb_array_elements_text(p_remove_secrets) x), '{}'::text[]);
  saved public.memory_settings;
begin
  if online then
    -- Lock the row (if any) so that concurrent online saves take their clocks one after another.
    select greatest(public.memory_server_clock(), public.memory_clock_after(s.config_clock))
      into c
      from public.memory_settings s
     where s.user_id = p_user_id and s.tenant_id = p_tenant_id
       for update;
    c := coalesce(c, public.memory_server_clock());
    incoming := coalesce((select jsonb_object_agg(i.key, i.value || jsonb_build_object('at', c))
                            from jsonb_each(incoming) i), '{}'::jsonb);
  end if;

  insert into public.memory_settings as s (user_id, tenant_id, config, secrets, config_clock)
  values (p_user_id, p_tenant_id, coalesce(p_config, '{}'::jsonb), incoming, case when p_config is null then null else c end)
  on conflict (user_id, tenant_id) do update
    set config = case when p_config is not null and (online or s.config_clock is null or s.config_clock < c) then p_config else s.config end,
        -- online: after the stored clock even if a concurrent first save inserted the row meanwhile
        config_clock = case when p_config is null then s.config_clock
                            when online then greatest(c, public.memory_clock_after(s.config_clock))
                            when s.config_clock is null or s.config_clock < c then c
                            else s.config_clock end,
        secrets = (
          select coalesce(jsonb_object_agg(k, v), '{}'::jsonb) from (
            -- stored secrets that are neither removed by a newer write nor replaced by a newer one
            select e.key as k, e.value as v from jsonb_each(s.secrets) e
             where not (e.key = any (removed) and (online or coalesce(e.value ->> 'at', '') < c))
               and not (incoming ? e.key and (online or coalesce(e.value ->> 'at', '') <= coalesce(incoming -> e.key ->> 'at', c)))
            union all
            select i.key, i.value from jsonb_each(incoming) i
             where online or not (s.secrets ? i.key and coalesce(s.secrets -> i.key ->> 'at', '') > coalesce(i.value ->> 'at', c))
          ) merged),
        version = s.version + 1,
        updated_at = now()
  returning * into saved;

  if p_key_ids is not null and exists (select 1 from jsonb_each(saved.secrets) e where not ((e.value ->> 'kid') = any (p_key_ids))) then
    -- Raising undoes the upsert above: the statement is one transaction.
    raise exception 'the settings of user % (tenant %) hold secrets under a key this writer cannot read (keys: %)',
      p_user_id, p_tenant_id, (select string_agg(distinct e.value ->> 'kid', ', ') from jsonb_each(saved.secrets) e)
      using errcode = 'LKM02';
  end if;

  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (p_user_id, p_tenant_id, 'settings.save', coalesce(p_component, 'unknown'), jsonb_build_object(
    'version', saved.version,
    'config_changed', p_config is not null,
    'secrets_set', (select coalesce(jsonb_agg(k order by k), '[]'::jsonb) from jsonb_object_keys(incoming) k),
    'secrets_removed', coalesce(p_remove_secrets, '[]'::jsonb)));

  return jsonb_build_object('tenant_id', saved.tenant_id, 'config', saved.config, 'secrets', saved.secrets,
                            'version', saved.version, 'updated_at', saved.updated_at,
                            'clock', case when online and p_config is not null then saved.config_clock else c end);
end;
$$;

create or replace function public.memory_get_settings(p_user_id uuid, p_tenant_id text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object('tenant_id', s.tenant_id, 'config', s.config, 'secrets', s.secrets,
                            'version', s.version, 'updated_at', s.updated_at)
    from public.memory_settings s
   where s.user_id = p_user_id and s.tenant_id = p_tenant_id;
$$;

-- Key rotation: rows holding a secret under another key id, and a compare-and-set write that
-- loses (returns false) if the row changed since it was read.
create or replace function public.memory_settings_to_rotate(p_kid text, p_limit integer)
returns table (user_id uuid, tenant_id text, secrets jsonb, version bigint)
language sql
stable
set search_path = ''
as $$
  select s.user_id, s.tenant_id, s.secrets, s.version
    from public.memory_settings s
   where exists (select 1 from jsonb_each(s.secrets) e where e.value ->> 'kid' is distinct from p_kid)
   order by s.user_id, s.tenant_id
   limit p_limit;
$$;

create or replace function public.memory_replace_secrets(
  p_user_id uuid, p_tenant_id text, p_secrets jsonb, p_expected_version bigint, p_component text)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update public.memory_settings
     set secrets = p_secrets, version = version + 1, updated_at = now()
   where user_id = p_user_id and tenant_id = p_tenant_id and version = p_expected_version;
  if not found then
    return false;
  end if;
  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (p_user_id, p_tenant_id, 'secrets.reencrypt', coalesce(p_component, 'unknown'),
          jsonb_build_object('secrets', (select coalesce(jsonb_agg(k order by k), '[]'::jsonb) from jsonb_object_keys(p_secrets) k)));
  return true;
end;
$$;

-- Link (or, with null, unlink) a memory user and a Supabase Auth user.
create or replace function public.memory_link(p_user_id uuid, p_auth_user_id uuid, p_component text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  previous uuid;
begin
  select auth_user_id into previous from public.memory_users where id = p_user_id for update;
  if not found then
    raise exception 'no memory user %', p_user_id using errcode = '23503';
  end if;
  update public.memory_users set auth_user_id = p_auth_user_id where id = p_user_id;
  insert into public.memory_audit_log (user_id, action, component, detail)
  values (p_user_id, case when p_auth_user_id is null then 'link.removed' else 'link.set' end, coalesce(p_component, 'unknown'),
          jsonb_build_object('auth_user_id', p_auth_user_id, 'previous_auth_user_id', previous));
  return jsonb_build_object('user_id', p_user_id, 'auth_user_id', p_auth_user_id, 'previous_auth_user_id', previous);
end;
$$;

-- Everything the database holds about one user, for `lk-memory inspect`.
create or replace function public.memory_profile(p_user_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'user', (select to_jsonb(u) from public.memory_users u where u.id = p_user_id),
    'memory_count', (select count(*) from public.memories m where m.user_id = p_user_id),
    'settings', (select coalesce(jsonb_agg(jsonb_build_object('tenant_id', s.tenant_id, 'config', s.config, 'secrets', s.secrets,
                                                              'version', s.version, 'updated_at', s.updated_at) order by s.tenant_id), '[]'::jsonb)
                   from public.memory_settings s where s.user_id = p_user_id),
    'audit', (select coalesce(jsonb_agg(to_jsonb(a) order by a.at desc), '[]'::jsonb)
                from (select at, action, component, tenant_id, detail from public.memory_audit_log
                       where user_id = p_user_id order by at desc limit 20) a));
$$;

-- What `lk-memory doctor` checks, readable through one RPC on Supabase. `rls` covers every table
-- of ours, found by name (`memories`, `memory_*`) rather than listed here, so that a table added
-- later is checked without anyone remembering to add it. SECURITY DEFINER: it reads catalogs and
-- counts secrets by key id across all users, and only service_role may execute it.
create or replace function public.memory_diagnostics()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'schema_version', public.memory_schema_version(),
    'rls', (select coalesce(jsonb_object_agg(c.relname, c.relrowsecurity), '{}'::jsonb)
              from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'public' and c.relkind in ('r', 'p')
               and (c.relname = 'memories' or c.relname like 'memory\_%')),
    'auth_foreign_keys', (select coalesce(jsonb_agg(jsonb_build_object('table', cl.relname, 'constraint', con.conname)), '[]'::jsonb)
                            from pg_catalog.pg_constraint con
                            join pg_catalog.pg_class cl on cl.oid = con.conrelid
                            join pg_catalog.pg_namespace ns on ns.oid = cl.relnamespace
                            join pg_catalog.pg_class ref on ref.oid = con.confrelid
                            join pg_catalog.pg_namespace rns on rns.oid = ref.relnamespace
                           where con.contype = 'f' and ns.nspname = 'public' and rns.nspname = 'auth' and ref.relname = 'users'),
    'secrets_by_key_id', (select coalesce(jsonb_object_agg(k.kid, k.n), '{}'::jsonb)
                            from (select e.value ->> 'kid' as kid, count(*) as n
                                    from public.memory_settings s, jsonb_each(s.secrets) e group by 1) k));
$$;

-- Direct edits by end users (RLS, column privileges below) change a memory's value or a
-- configuration without a clock: these triggers give such an edit the clock and write order of an
-- online write, so that it counts as the newest write (a journal replay cannot undo it, and it is
-- "most recently updated"). Our functions always set a new clock themselves, so the WHEN
-- conditions keep the triggers off their path. SECURITY DEFINER so that end users need no EXECUTE
-- on memory_clock_after (trigger functions themselves are not checked for EXECUTE when fired).
create or replace function public.memory_clock_unclocked_memory()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  new.clock := greatest(public.memory_server_clock(), public.memory_clock_after(old.clock));
  new.write_seq := nextval('public.memories_write_seq');
  new.updated_at := now();
  return new;
end;
$$;
drop trigger if exists memories_clock_direct_edits on public.memories;
create trigger memories_clock_direct_edits
  before update on public.memories
  for each row when (new.clock is not distinct from old.clock)
  execute function public.memory_clock_unclocked_memory();

create or replace function public.memory_clock_unclocked_settings()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  new.config_clock := greatest(public.memory_server_clock(), public.memory_clock_after(old.config_clock));
  new.version := old.version + 1;
  new.updated_at := now();
  return new;
end;
$$;
drop trigger if exists memory_settings_clock_direct_edits on public.memory_settings;
create trigger memory_settings_clock_direct_edits
  before update on public.memory_settings
  for each row when (new.config is distinct from old.config and new.config_clock is not distinct from old.config_clock)
  execute function public.memory_clock_unclocked_settings();

-- ---------------------------------------------------------------------------------------------
-- Row Level Security on every table, the migrations table included. The owner (migrations,
-- DATABASE_URL as postgres) and Supabase's service_role bypass it; a role without a policy sees
-- and changes nothing.
-- ---------------------------------------------------------------------------------------------
alter table public.memory_schema_migrations enable row level security;
alter table public.memory_users enable row level security;
alter table public.memories enable row level security;
alter table public.memory_tombstones enable row level security;
alter table public.memory_settings enable row level security;
alter table public.memory_audit_log enable row level security;

-- ---------------------------------------------------------------------------------------------
-- Table and sequence privileges. The roles exist only on Supabase (or a database prepared like
-- one), hence the checks: plain PostgreSQL and PGlite have none of them.
-- ---------------------------------------------------------------------------------------------
do $$
declare
  tables constant text := 'public.memory_schema_migrations, public.memory_users, public.memories, '
                          || 'public.memory_tombstones, public.memory_settings, public.memory_audit_log';
  sequences constant text := 'public.memories_write_seq, public.memory_audit_log_id_seq';
  r text;
begin
  -- Start from nothing: Supabase's default privileges gave anon, authenticated and service_role
  -- ALL (including TRUNCATE, and UPDATE on sequences, which is what setval needs). REVOKE on a
  -- table also takes back its column privileges.
  execute format('revoke all on %s from public', tables);
  execute format('revoke all on sequence %s from public', sequences);
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      execute format('revoke all on %s from %I', tables, r);
      execute format('revoke all on sequence %s from %I', sequences, r);
    end if;
  end loop;

  -- The service reads and writes the data (it bypasses RLS). No TRUNCATE, TRIGGER or REFERENCES,
  -- and only SELECT on the migrations table: `lk-memory migrate` runs as the owner.
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    execute 'grant select, insert, update, delete on public.memory_users, public.memories, public.memory_tombstones,
               public.memory_settings, public.memory_audit_log to service_role';
    execute 'grant select on public.memory_schema_migrations to service_role';
    -- USAGE for nextval (the columns' defaults), SELECT for currval; never UPDATE (setval).
    execute format('grant usage, select on sequence %s to service_role', sequences);
  end if;

  -- anon: nothing at all. authenticated: its own rows only, below, when Supabase Auth is there.
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated')
     and pg_catalog.to_regprocedure('auth.uid()') is not null then
    execute 'grant select on public.memory_users to authenticated';
    execute 'grant select, delete on public.memories, public.memory_settings to authenticated';
    -- Column privileges: an end user edits what a memory says, never its ordering (clock,
    -- write_seq) nor its timestamps; user_id only on insert, where the policy pins it to the
    -- caller. Settings: the configuration only. Secrets are ciphertext that the service makes
    -- with a key end users do not have, so there is nothing valid for them to write.
    execute 'grant insert (user_id, category, key, value) on public.memories to authenticated';
    execute 'grant update (category, key, value) on public.memories to authenticated';
    execute 'grant insert (user_id, tenant_id, config) on public.memory_settings to authenticated';
    execute 'grant update (config) on public.memory_settings to authenticated';
    -- An insert into memories evaluates write_seq's default: nextval needs USAGE (not UPDATE).
    execute 'grant usage on sequence public.memories_write_seq to authenticated';
  end if;
end $$;

-- ---------------------------------------------------------------------------------------------
-- Row Level Security policies (Supabase only: they need auth.uid()). End users signed in through
-- Supabase Auth reach the rows of the memory user linked to their auth.uid(), and nothing else.
-- ---------------------------------------------------------------------------------------------
do $$
begin
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated')
     and pg_catalog.to_regprocedure('auth.uid()') is not null then
    -- The memory user linked to the caller. SECURITY DEFINER so that the policies below need no
    -- policy on memory_users to read the link; (select ...) makes it run once per statement.
    execute $f$
      create or replace function public.memory_current_user_id() returns uuid
      language sql stable security definer set search_path = '' as
      'select id from public.memory_users where auth_user_id = (select auth.uid())'
    $f$;

    execute 'drop policy if exists memory_users_own on public.memory_users';
    execute 'create policy memory_users_own on public.memory_users for select to authenticated
               using (auth_user_id = (select auth.uid()))';
    execute 'drop policy if exists memories_own on public.memories';
    execute 'create policy memories_own on public.memories for all to authenticated
               using (user_id = (select public.memory_current_user_id()))
               with check (user_id = (select public.memory_current_user_id()))';
    execute 'drop policy if exists memory_settings_own on public.memory_settings';
    execute 'create policy memory_settings_own on public.memory_settings for all to authenticated
               using (user_id = (select public.memory_current_user_id()))
               with check (user_id = (select public.memory_current_user_id()))';
  end if;
end $$;

-- ---------------------------------------------------------------------------------------------
-- Function privileges, by signature: only ours (public may hold other applications' memory_*
-- functions, whose grants are theirs). PostgreSQL grants EXECUTE to PUBLIC by default, and
-- Supabase also to anon and authenticated; take that back, and give EXECUTE to service_role.
-- authenticated keeps only what its own statements evaluate: memory_current_user_id (the RLS
-- policies) and memory_server_clock (the default of memories.clock).
-- ---------------------------------------------------------------------------------------------
do $$
declare
  ours constant text[] := array[
    'public.memory_server_clock()',
    'public.memory_clock_after(text)',
    'public.memory_schema_version()',
    'public.memory_reload_schema()',
    'public.memory_start_session(uuid, text, integer, text)',
    'public.memory_provision(uuid, text)',
    'public.memory_store(uuid, text, text, text, text)',
    'public.memory_retrieve(uuid, text, text)',
    'public.memory_get(uuid, text, text)',
    'public.memory_list(uuid, text, integer)',
    'public.memory_forget(uuid, text, text, text)',
    'public.memory_forget_all(uuid)',
    'public.memory_audit(uuid, text, text, text, jsonb)',
    'public.memory_save_settings(uuid, text, jsonb, jsonb, jsonb, text, text, text[])',
    'public.memory_get_settings(uuid, text)',
    'public.memory_settings_to_rotate(text, integer)',
    'public.memory_replace_secrets(uuid, text, jsonb, bigint, text)',
    'public.memory_link(uuid, uuid, text)',
    'public.memory_profile(uuid)',
    'public.memory_diagnostics()',
    'public.memory_clock_unclocked_memory()',
    'public.memory_clock_unclocked_settings()',
    'public.memory_current_user_id()'];
  for_rls constant text[] := array['public.memory_current_user_id()', 'public.memory_server_clock()'];
  f text;
  r text;
begin
  foreach f in array ours loop
    if pg_catalog.to_regprocedure(f) is null then
      -- Only the RLS helper is conditional (it needs auth.uid()); anything else missing is a typo here.
      if f = 'public.memory_current_user_id()' then
        continue;
      end if;
      raise exception 'livekit-user-memory migration: function % does not exist', f;
    end if;
    execute format('revoke all on function %s from public', f);
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
      if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
        execute format('revoke all on function %s from %I', f, r);
      end if;
    end loop;
    if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
      execute format('grant execute on function %s to service_role', f);
    end if;
    if f = any (for_rls) and exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated')
       and pg_catalog.to_regprocedure('auth.uid()') is not null then
      execute format('grant execute on function %s to authenticated', f);
    end if;
  end loop;
end $$;

-- Supabase: make PostgREST see the new functions now instead of after its next cache refresh.
-- On plain PostgreSQL and PGlite nobody listens and this is a no-op.
notify pgrst, 'reload schema';
