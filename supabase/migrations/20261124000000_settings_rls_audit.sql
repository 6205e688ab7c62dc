-- livekit-user-memory: per-user agent settings with encrypted secrets, an audit log, explicit
-- links to Supabase Auth users, Row Level Security, and the functions the Supabase transport and
-- `lk-memory doctor` call. Idempotent, like every migration here (see the first one).

-- Linking a memory user to a Supabase Auth user is optional and explicit (`lk-memory link`).
alter table public.memory_users add column if not exists auth_user_id uuid;
do $$
begin
  if not exists (select 1 from pg_constraint where conname = 'memory_users_auth_user_id_key') then
    alter table public.memory_users add constraint memory_users_auth_user_id_key unique (auth_user_id);
  end if;
end $$;

-- One row per user and tenant. `secrets` maps a name to {"v":1,"kid","iv","ct","tag"}: AES-256-GCM
-- ciphertext made by the application; the database never sees a key or a plaintext.
create table if not exists public.memory_settings (
  user_id uuid not null references public.memory_users (id) on delete cascade,
  tenant_id text not null default 'default' check (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
  config jsonb not null default '{}'::jsonb check (jsonb_typeof(config) = 'object'),
  secrets jsonb not null default '{}'::jsonb check (jsonb_typeof(secrets) = 'object'),
  version bigint not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (user_id, tenant_id)
);

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

-- The schema's version, for clients that cannot read the migrations table (the Supabase CLI keeps
-- its own). Every later migration redefines it.
create or replace function public.memory_schema_version()
returns text
language sql
immutable
as $$ select '20261124000000'::text $$;

-- Lets the service role refresh PostgREST's schema cache after a PGRST202/204/205.
create or replace function public.memory_reload_schema()
returns void
language sql
as $$ select pg_notify('pgrst', 'reload schema') $$;

create or replace function public.memory_audit(p_user_id uuid, p_tenant_id text, p_action text, p_component text, p_detail jsonb)
returns void
language sql
as $$
  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (p_user_id, p_tenant_id, p_action, p_component, coalesce(p_detail, '{}'::jsonb));
$$;

-- Session start now also returns the user's settings for the tenant, in the same round trip.
drop function if exists public.memory_start_session(uuid, text, integer);
create or replace function public.memory_start_session(p_user_id uuid, p_identity text, p_memory_limit integer, p_tenant_id text default 'default')
returns jsonb
language plpgsql
as $$
declare
  u public.memory_users;
  recent jsonb;
  settings jsonb;
begin
  perform pg_advisory_xact_lock(1818979693, hashtext(p_identity)); -- see the first migration
  insert into public.memory_users as mu (id, identity, session_count)
  values (p_user_id, p_identity, 1)
  on conflict (id) do update
    set session_count = mu.session_count + 1, last_seen_at = now()
  returning * into u;

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

-- Save settings: the upsert names its conflict target (user_id, tenant_id), so saving the same
-- settings again, or from many callers at once, updates the one row instead of failing with a
-- unique violation (the HTTP 409 that sent settings to a local fallback before). A null config
-- keeps the stored one; secrets are merged by name, and p_remove_secrets (a JSON array of names)
-- deletes names.
create or replace function public.memory_save_settings(
  p_user_id uuid, p_tenant_id text, p_config jsonb, p_secrets jsonb, p_remove_secrets jsonb, p_component text)
returns jsonb
language plpgsql
as $$
declare
  saved public.memory_settings;
begin
  insert into public.memory_settings as s (user_id, tenant_id, config, secrets)
  values (p_user_id, p_tenant_id, coalesce(p_config, '{}'::jsonb), coalesce(p_secrets, '{}'::jsonb))
  on conflict (user_id, tenant_id) do update
    set config = coalesce(p_config, s.config),
        secrets = (s.secrets - coalesce((select array_agg(x) from jsonb_array_elements_text(p_remove_secrets) x), '{}'::text[]))
                  || coalesce(p_secrets, '{}'::jsonb),
        version = s.version + 1,
        updated_at = now()
  returning * into saved;

  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (p_user_id, p_tenant_id, 'settings.save', coalesce(p_component, 'unknown'), jsonb_build_object(
    'version', saved.version,
    'config_changed', p_config is not null,
    'secrets_set', (select coalesce(jsonb_agg(k order by k), '[]'::jsonb) from jsonb_object_keys(coalesce(p_secrets, '{}'::jsonb)) k),
    'secrets_removed', coalesce(p_remove_secrets, '[]'::jsonb)));

  return jsonb_build_object('tenant_id', saved.tenant_id, 'config', saved.config, 'secrets', saved.secrets,
                            'version', saved.version, 'updated_at', saved.updated_at);
end;
$$;

create or replace function public.memory_get_settings(p_user_id uuid, p_tenant_id text)
returns jsonb
language sql
stable
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

-- What `lk-memory doctor` checks, readable through one RPC on Supabase.
create or replace function public.memory_diagnostics()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'schema_version', public.memory_schema_version(),
    'rls', (select jsonb_object_agg(c.relname, c.relrowsecurity)
              from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'public' and c.relname in ('memory_users', 'memories', 'memory_settings', 'memory_audit_log')),
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

-- Row Level Security on every table. The owner (migrations, DATABASE_URL as postgres) and
-- Supabase's service_role bypass it; nothing is granted to anon.
alter table public.memory_users enable row level security;
alter table public.memories enable row level security;
alter table public.memory_settings enable row level security;
alter table public.memory_audit_log enable row level security;

-- Our functions (memory_*) are for the service side only. PostgreSQL grants EXECUTE to PUBLIC
-- by default, and Supabase also to anon and authenticated: take that back, for ours alone (a
-- Supabase project's public schema holds other applications' functions too).
do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p
            where p.pronamespace = 'public'::regnamespace and p.proname like 'memory\_%' loop
    execute format('revoke execute on function %s from public', f);
    if exists (select 1 from pg_roles where rolname = 'anon') then
      execute format('revoke execute on function %s from anon', f);
    end if;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
      execute format('revoke execute on function %s from authenticated', f);
    end if;
    if exists (select 1 from pg_roles where rolname = 'service_role') then
      execute format('grant execute on function %s to service_role', f);
    end if;
  end loop;
end $$;

-- On Supabase (where these roles and auth.uid() exist): end users signed in through Supabase Auth
-- reach the rows of the memory user linked to their auth.uid(), and nothing else.
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    execute 'revoke all on public.memory_users, public.memories, public.memory_settings, public.memory_audit_log from anon';
  end if;
  if exists (select 1 from pg_roles where rolname = 'service_role') then
    execute 'grant all on public.memory_users, public.memories, public.memory_settings, public.memory_audit_log to service_role';
    execute 'grant usage on sequence public.memories_write_seq, public.memory_audit_log_id_seq to service_role';
  end if;
  if exists (select 1 from pg_roles where rolname = 'authenticated') and to_regprocedure('auth.uid()') is not null then
    execute 'revoke all on public.memory_users, public.memories, public.memory_settings, public.memory_audit_log from authenticated';
    execute 'grant select on public.memory_users to authenticated';
    execute 'grant select, insert, update, delete on public.memories, public.memory_settings to authenticated';
    execute 'grant usage on sequence public.memories_write_seq to authenticated';

    -- The memory user linked to the caller. SECURITY DEFINER so that the policies below need no
    -- policy on memory_users to read the link; (select ...) makes it run once per statement.
    execute $f$
      create or replace function public.memory_current_user_id() returns uuid
      language sql stable security definer set search_path = '' as
      'select id from public.memory_users where auth_user_id = (select auth.uid())'
    $f$;
    execute 'revoke execute on function public.memory_current_user_id() from public, anon';
    execute 'grant execute on function public.memory_current_user_id() to authenticated';

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

notify pgrst, 'reload schema';
