-- livekit-user-memory: write clocks, so that a later write wins over an older one whichever
-- reaches the database first. Writes that waited in a local journal during an outage are
-- replayed later, maybe after newer writes from other processes; each write carries the clock of
-- the moment it was made (milliseconds, a per-process sequence and a writer id, as one sortable
-- text), and the database keeps the newest. Deletions leave a tombstone with their clock, so an
-- older store replayed after a newer forget does not bring the value back.

create or replace function public.memory_server_clock()
returns text
language sql
volatile
as $$ select lpad(floor(extract(epoch from clock_timestamp()) * 1000)::bigint::text, 15, '0') || '.0000000000.server' $$;

alter table public.memories add column if not exists clock text;
update public.memories
   set clock = lpad(floor(extract(epoch from updated_at) * 1000)::bigint::text, 15, '0') || '.0000000000.server'
 where clock is null;
alter table public.memories alter column clock set default public.memory_server_clock();
alter table public.memories alter column clock set not null;

create table if not exists public.memory_tombstones (
  user_id uuid not null references public.memory_users (id) on delete cascade,
  category text not null,
  key text not null,
  clock text not null,
  primary key (user_id, category, key)
);
alter table public.memory_tombstones enable row level security;

-- The clock of the newest configuration written to a settings row.
alter table public.memory_settings add column if not exists config_clock text;

drop function if exists public.memory_store(uuid, text, text, text);
-- One statement on the hot path: the insert is skipped when a newer deletion's tombstone exists,
-- and the update when the stored value is newer. (A superseded older tombstone is left in place:
-- it can only ever block writes older than itself.)
create or replace function public.memory_store(p_user_id uuid, p_category text, p_key text, p_value text, p_clock text default null)
returns jsonb
language plpgsql
as $$
declare
  c text := coalesce(p_clock, public.memory_server_clock());
  written public.memories;
begin
  insert into public.memories as m (user_id, category, key, value, clock)
  select p_user_id, p_category, p_key, p_value, c
   where not exists (select 1 from public.memory_tombstones t
                      where t.user_id = p_user_id and t.category = p_category and t.key = p_key and t.clock >= c)
  on conflict (user_id, category, key) do update
    set value = excluded.value, updated_at = now(), write_seq = nextval('public.memories_write_seq'), clock = excluded.clock
    where m.clock < excluded.clock
  returning * into written;
  if written.user_id is null then
    return jsonb_build_object('applied', false, 'clock', c);
  end if;
  return jsonb_build_object('applied', true, 'clock', c, 'updated_at', written.updated_at);
end;
$$;

drop function if exists public.memory_forget(uuid, text, text);
create or replace function public.memory_forget(p_user_id uuid, p_category text, p_key text, p_clock text default null)
returns boolean
language plpgsql
as $$
declare
  c text := coalesce(p_clock, public.memory_server_clock());
  existed boolean;
begin
  with gone as (
    delete from public.memories m
     where m.user_id = p_user_id and m.category = p_category and m.key = p_key and m.clock <= c
    returning 1)
  select exists (select 1 from gone) into existed;
  insert into public.memory_tombstones as t (user_id, category, key, clock)
  values (p_user_id, p_category, p_key, c)
  on conflict (user_id, category, key) do update set clock = greatest(t.clock, excluded.clock);
  return existed;
end;
$$;

-- A read that also says how new the value is, for merging pending journal entries over it.
create or replace function public.memory_get(p_user_id uuid, p_category text, p_key text)
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'value', (select m.value from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key),
    'clock', (select m.clock from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key),
    'deleted', (select t.clock from public.memory_tombstones t where t.user_id = p_user_id and t.category = p_category and t.key = p_key));
$$;

-- Settings: the configuration follows its clock; each secret follows the clock stored inside it
-- ("at"), so two writers of different secrets both land, and of one secret the later one wins.
drop function if exists public.memory_save_settings(uuid, text, jsonb, jsonb, jsonb, text);
create or replace function public.memory_save_settings(
  p_user_id uuid, p_tenant_id text, p_config jsonb, p_secrets jsonb, p_remove_secrets jsonb, p_component text, p_clock text default null)
returns jsonb
language plpgsql
as $$
declare
  c text := coalesce(p_clock, public.memory_server_clock());
  incoming jsonb := coalesce(p_secrets, '{}'::jsonb);
  removed text[] := coalesce((select array_agg(x) from jsonb_array_elements_text(p_remove_secrets) x), '{}'::text[]);
  saved public.memory_settings;
begin
  insert into public.memory_settings as s (user_id, tenant_id, config, secrets, config_clock)
  values (p_user_id, p_tenant_id, coalesce(p_config, '{}'::jsonb), incoming, case when p_config is null then null else c end)
  on conflict (user_id, tenant_id) do update
    set config = case when p_config is not null and (s.config_clock is null or s.config_clock < c) then p_config else s.config end,
        config_clock = case when p_config is not null and (s.config_clock is null or s.config_clock < c) then c else s.config_clock end,
        secrets = (
          select coalesce(jsonb_object_agg(k, v), '{}'::jsonb) from (
            -- stored secrets that are neither removed by a newer write nor replaced by a newer one
            select e.key as k, e.value as v from jsonb_each(s.secrets) e
             where not (e.key = any (removed) and coalesce(e.value ->> 'at', '') < c)
               and not (incoming ? e.key and coalesce(e.value ->> 'at', '') <= coalesce(incoming -> e.key ->> 'at', c))
            union all
            select i.key, i.value from jsonb_each(incoming) i
             where not (s.secrets ? i.key and coalesce(s.secrets -> i.key ->> 'at', '') > coalesce(i.value ->> 'at', c))
          ) merged),
        version = s.version + 1,
        updated_at = now()
  returning * into saved;

  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (p_user_id, p_tenant_id, 'settings.save', coalesce(p_component, 'unknown'), jsonb_build_object(
    'version', saved.version,
    'config_changed', p_config is not null,
    'secrets_set', (select coalesce(jsonb_agg(k order by k), '[]'::jsonb) from jsonb_object_keys(incoming) k),
    'secrets_removed', coalesce(p_remove_secrets, '[]'::jsonb)));

  return jsonb_build_object('tenant_id', saved.tenant_id, 'config', saved.config, 'secrets', saved.secrets,
                            'version', saved.version, 'updated_at', saved.updated_at);
end;
$$;

create or replace function public.memory_schema_version()
returns text
language sql
immutable
as $$ select '20261125000000'::text $$;

-- Service side only, as for every memory_* function (see the previous migration).
do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p
            where p.pronamespace = 'public'::regnamespace and p.proname like 'memory\_%'
              and p.proname <> 'memory_current_user_id' loop
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
  if exists (select 1 from pg_roles where rolname = 'service_role') then
    execute 'grant all on public.memory_tombstones to service_role';
  end if;
  if exists (select 1 from pg_roles where rolname = 'anon') then
    execute 'revoke all on public.memory_tombstones from anon';
  end if;
  if exists (select 1 from pg_roles where rolname = 'authenticated') then
    execute 'revoke all on public.memory_tombstones from authenticated';
    -- The default of memories.clock: end users inserting their own rows (RLS) evaluate it.
    execute 'grant execute on function public.memory_server_clock() to authenticated';
  end if;
end $$;

notify pgrst, 'reload schema';
