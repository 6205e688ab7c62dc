-- Group commit: several stores (or reads), of one user or of many, in one call and one transaction.
--
-- A process that has stores waiting while earlier ones are still in flight sends the waiting ones
-- together (memory/combiner.ts, memory/group-commit.ts); reads likewise. Every store still runs memory_store itself, with its consent,
-- tombstone, clock and cap rules; what the batch saves is the round trip, the transaction and,
-- above all, the commit's WAL flush per store, which is most of a store's cost on a server that
-- flushes (synchronous_commit on). Nothing about durability changes: each caller's write is
-- acknowledged only after the batch's transaction has committed.
--
-- All or none: an error in any store (a caller who denied consent, a user erased meanwhile)
-- rolls the whole batch back, and the application then sends each of its stores on its own, so
-- that every caller gets exactly the answer (or the error) a single store would have given. No
-- subtransaction per item: EXCEPTION blocks would cost a subtransaction each on the fast path, and
-- more than 64 in one transaction slow every other backend's snapshots.
--
-- A lock held elsewhere for long (a consent change erasing many rows, a purge) must not hold up
-- every other caller of the batch: after 1 s of waiting for a lock the batch gives up (55P03, a
-- refusal like any other), and each store is sent alone, where only the one that needs that lock
-- waits for it.
--
-- Lock order: the stores run sorted by the advisory lock they take (hashtext of the user id), then
-- by user, category and key, so two batches that touch the same users and keys take their locks
-- in the same order and cannot deadlock each other. Stores of the same key keep the order in which
-- they were sent (the array index breaks ties): the later one wins, as it would one after another.
--
-- p_items: [{user_id, category, key, value, expires_at?}]. Consent default, cap and retention are
-- the deployment's, the same for every item. Returns a JSON array with memory_store's answer for
-- each item, in the order of p_items.

create or replace function public.memory_store_batch(p_items jsonb, p_consent text default 'granted',
                                                     p_max_per_user integer default null, p_retention_days integer default null)
returns jsonb
language plpgsql
set search_path = ''
set lock_timeout = '1s'
as $$
declare
  e record;
  answers jsonb[];
  result jsonb;
  total integer;
  refused record;
  incomplete boolean;
  repeated boolean;
begin
  if pg_catalog.jsonb_typeof(p_items) is distinct from 'array' then
    raise exception 'memory_store_batch expects a JSON array' using errcode = '22023';
  end if;
  if p_consent is null or p_consent not in ('granted', 'ask', 'denied') then
    raise exception 'p_consent must be granted, ask or denied, not %', p_consent using errcode = '22023';
  end if;
  total := pg_catalog.jsonb_array_length(p_items);
  -- The items are read from p_items by each statement below (a temporary table would write the
  -- catalog on every call).
  -- One pass over the items for both checks below.
  select pg_catalog.bool_or(i.user_id is null or i.category is null or i.key is null or i.value is null),
         pg_catalog.count(*) <> pg_catalog.count(distinct (i.user_id, i.category, i.key))
    into incomplete, repeated
    from rows from (pg_catalog.jsonb_to_recordset(p_items) as (user_id uuid, category text, key text, value text, expires_at timestamptz)) with ordinality as i(user_id, category, key, value, expires_at, n);
  if incomplete then
    raise exception 'memory_store_batch: every item needs user_id, category, key and value' using errcode = '22023';
  end if;

  -- The cap evicts store by store, and the same key twice must apply in order: memory_store itself,
  -- item by item, in lock order.
  if p_max_per_user is not null or repeated then
    answers := pg_catalog.array_fill(null::jsonb, array[total]);
    for e in select i.* from rows from (pg_catalog.jsonb_to_recordset(p_items) as (user_id uuid, category text, key text, value text, expires_at timestamptz)) with ordinality as i(user_id, category, key, value, expires_at, n)
              order by pg_catalog.hashtext(i.user_id::text), i.user_id, i.category, i.key, i.n loop
      answers[e.n] := public.memory_store(e.user_id, e.category, e.key, e.value, null, e.expires_at,
                                          p_consent, p_max_per_user, p_retention_days);
    end loop;
    return pg_catalog.to_jsonb(answers);
  end if;

  -- The common case, set-based: what memory_store does for each online store (p_clock null), once
  -- for all. Its shared lock on each user first, in lock order (see memory_store for why), then the
  -- consent of each user read under it.
  for e in select distinct pg_catalog.hashtext(i.user_id::text) as h from rows from (pg_catalog.jsonb_to_recordset(p_items) as (user_id uuid, category text, key text, value text, expires_at timestamptz)) with ordinality as i(user_id, category, key, value, expires_at, n) order by 1 loop
    perform pg_catalog.pg_advisory_xact_lock_shared(1818979694, e.h);
  end loop;
  select i.user_id, u.id is null as missing, coalesce(u.memory_consent, p_consent) as consent into refused
    from rows from (pg_catalog.jsonb_to_recordset(p_items) as (user_id uuid, category text, key text, value text, expires_at timestamptz)) with ordinality as i(user_id, category, key, value, expires_at, n)
    left join public.memory_users u on u.id = i.user_id
   where u.id is null or coalesce(u.memory_consent, p_consent) <> 'granted'
   limit 1;
  if found then
    -- The same refusal memory_store gives; the application then sends each store alone, and each
    -- caller gets its own answer.
    if refused.missing then
      raise exception 'no memory user %', refused.user_id using errcode = '23503';
    elsif refused.consent = 'denied' then
      raise exception 'memory consent denied: user % asked not to be remembered, so nothing is stored for them', refused.user_id using errcode = 'LKM03';
    else
      raise exception 'memory consent not given yet: user % has not agreed to be remembered, so nothing is stored for them', refused.user_id using errcode = 'LKM04';
    end if;
  end if;

  -- Clocks as memory_store makes them: this moment's server clock, above the key's tombstone, and
  -- above the clock the row holds (the upsert's greatest()).
  with stamped as (
    select i.*, ts.clock as tomb,
           pg_catalog.lpad(pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint::text, 15, '0') || '.0000000000.server' as now_clock
      from rows from (pg_catalog.jsonb_to_recordset(p_items) as (user_id uuid, category text, key text, value text, expires_at timestamptz)) with ordinality as i(user_id, category, key, value, expires_at, n)
      left join public.memory_tombstones ts on ts.user_id = i.user_id and ts.category = i.category and ts.key = i.key),
  clocked as (
    select s.user_id, s.category, s.key, s.value, s.expires_at, s.n,
           case when s.tomb >= s.now_clock then
             case when pg_catalog.substr(s.tomb, 17, 10)::bigint >= 9999999999
                  then pg_catalog.lpad((pg_catalog.substr(s.tomb, 1, 15)::bigint + 1)::text, 15, '0') || '.0000000000.server'
                  else pg_catalog.substr(s.tomb, 1, 15) || '.' || pg_catalog.lpad((pg_catalog.substr(s.tomb, 17, 10)::bigint + 1)::text, 10, '0') || '.server' end
           else s.now_clock end as clock
      from stamped s),
  written as (
    insert into public.memories as m (user_id, category, key, value, clock, expires_at, used_at)
    select c.user_id, c.category, c.key, c.value, c.clock, c.expires_at, now()
      from clocked c
     order by pg_catalog.hashtext(c.user_id::text), c.user_id, c.category, c.key
    on conflict (user_id, category, key) do update
      set value = excluded.value, updated_at = now(), write_seq = nextval('public.memories_write_seq'),
          expires_at = excluded.expires_at, used_at = excluded.used_at,
          clock = greatest(excluded.clock,
                    case when pg_catalog.substr(m.clock, 17, 10)::bigint >= 9999999999
                         then pg_catalog.lpad((pg_catalog.substr(m.clock, 1, 15)::bigint + 1)::text, 15, '0') || '.0000000000.server'
                         else pg_catalog.substr(m.clock, 1, 15) || '.' || pg_catalog.lpad((pg_catalog.substr(m.clock, 17, 10)::bigint + 1)::text, 10, '0') || '.server'
                    end)
    returning m.user_id, m.category, m.key, m.clock, m.updated_at, m.expires_at)
  select pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(jsonb_build_object(
           'applied', true, 'clock', w.clock, 'updated_at', w.updated_at, 'expires_at', w.expires_at)) order by i.n)
    into result
    from rows from (pg_catalog.jsonb_to_recordset(p_items) as (user_id uuid, category text, key text, value text, expires_at timestamptz)) with ordinality as i(user_id, category, key, value, expires_at, n)
    join written w on w.user_id = i.user_id and w.category = i.category and w.key = i.key;
  if pg_catalog.jsonb_array_length(coalesce(result, '[]'::jsonb)) <> total then
    raise exception 'memory_store_batch: % answers for % stores', pg_catalog.jsonb_array_length(coalesce(result, '[]'::jsonb)), total;
  end if;
  return result;
end;
$$;

-- Several plain reads in one call: memory_retrieve's answer for each item ({user_id, category,
-- key}), in the order of p_items, as a JSON array of strings and nulls. Without p_touch, one
-- statement; with it (a cap is configured: a read counts as a use) each item is memory_retrieve,
-- which writes used_at, in the same lock order as memory_store_batch.
create or replace function public.memory_retrieve_batch(p_items jsonb, p_retention_days integer default null,
                                                        p_touch boolean default false)
returns jsonb
language plpgsql
set search_path = ''
set lock_timeout = '1s'
as $$
declare
  e record;
  answers jsonb[];
begin
  if pg_catalog.jsonb_typeof(p_items) is distinct from 'array' then
    raise exception 'memory_retrieve_batch expects a JSON array' using errcode = '22023';
  end if;
  if exists (select 1 from pg_catalog.jsonb_array_elements(p_items) as x(item)
              where pg_catalog.jsonb_typeof(x.item) is distinct from 'object'
                 or x.item ->> 'user_id' is null or x.item ->> 'category' is null or x.item ->> 'key' is null) then
    raise exception 'memory_retrieve_batch: every item needs user_id, category and key' using errcode = '22023';
  end if;
  if not coalesce(p_touch, false) then
    return (select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(m.value) order by o.n), '[]'::jsonb)
              from pg_catalog.jsonb_array_elements(p_items) with ordinality as o(item, n)
              left join public.memories m
                on m.user_id = (o.item ->> 'user_id')::uuid and m.category = o.item ->> 'category' and m.key = o.item ->> 'key'
               and (m.expires_at is null or m.expires_at > pg_catalog.now())
               and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)));
  end if;
  answers := pg_catalog.array_fill(null::jsonb, array[pg_catalog.jsonb_array_length(p_items)]);
  for e in select (o.item ->> 'user_id')::uuid as user_id, o.item ->> 'category' as category, o.item ->> 'key' as key, o.n
             from pg_catalog.jsonb_array_elements(p_items) with ordinality as o(item, n)
            order by pg_catalog.hashtext(((o.item ->> 'user_id')::uuid)::text), 1, 2, 3, o.n loop
    answers[e.n] := pg_catalog.to_jsonb(public.memory_retrieve(e.user_id, e.category, e.key, p_retention_days, true));
  end loop;
  return pg_catalog.to_jsonb(answers);
end;
$$;

-- Functions that write several rows of one user, in the lock order of the batches above, so that
-- they cannot deadlock with a batch that holds some of the same rows:
--  - memory_store_many (import, storeMany) stores its entries sorted by category and key (entries
--    of the same key keep their order: the later one still wins);
--  - memory_forget_all and memory_erase_user take the user's lock exclusively first (as a consent
--    change does), so they wait for batches holding the user's rows and batches wait for them.
--    memory_erase_user is the erasure migration's, with that one lock added.
create or replace function public.memory_store_many(p_user_id uuid, p_memories jsonb, p_consent text default 'granted',
                                                    p_max_per_user integer default null, p_retention_days integer default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  e record;
  n integer := 0;
begin
  if pg_catalog.jsonb_typeof(p_memories) is distinct from 'array' then
    raise exception 'memory_store_many expects a JSON array' using errcode = '22023';
  end if;
  for e in select x.category, x.key, x.value, x.expires_at
             from rows from (pg_catalog.jsonb_to_recordset(p_memories) as (category text, key text, value text, expires_at timestamptz))
                  with ordinality as x(category, key, value, expires_at, n)
            order by x.category, x.key, x.n loop
    if e.category is null or e.key is null or e.value is null then
      raise exception 'memory_store_many: every entry needs category, key and value' using errcode = '22023';
    end if;
    perform public.memory_store(p_user_id, e.category, e.key, e.value, null, e.expires_at, p_consent, p_max_per_user, p_retention_days);
    n := n + 1;
  end loop;
  return n;
end;
$$;

create or replace function public.memory_forget_all(p_user_id uuid)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  n bigint;
begin
  perform pg_catalog.pg_advisory_xact_lock(1818979694, pg_catalog.hashtext(p_user_id::text));
  delete from public.memories where user_id = p_user_id;
  get diagnostics n = row_count;
  return n;
end;
$$;

create or replace function public.memory_erase_user(p_user_id uuid, p_marker text, p_component text, p_only_if_stored boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  who text;
  c text;
  n_memories bigint := 0;
  n_tombstones bigint := 0;
  n_settings bigint := 0;
  n_audit bigint := 0;
  n_embeddings bigint := 0;
  n_users bigint := 0;
  at_ timestamptz;
begin
  if p_marker is null or p_marker !~ '^[0-9a-f]{64}$' then
    raise exception 'memory_erase_user: the marker must be 64 lower-case hex digits' using errcode = '22023';
  end if;
  select u.identity into who from public.memory_users u where u.id = p_user_id;
  if who is not null then
    perform pg_catalog.pg_advisory_xact_lock(1818979693, pg_catalog.hashtext(who)); -- see memory_start_session
  end if;
  -- The user's store lock, exclusively (as a consent change takes it): stores in flight finish
  -- first, later ones wait for the erasure, and a batch holding some of the user's rows never
  -- meets this function's deletes in another order.
  perform pg_catalog.pg_advisory_xact_lock(1818979694, pg_catalog.hashtext(p_user_id::text));
  if p_only_if_stored
     and not exists (select 1 from public.memory_users where id = p_user_id)
     and not exists (select 1 from public.memory_audit_log where user_id = p_user_id) then
    return jsonb_build_object('existed', false);
  end if;
  -- After the server's clock and after every clock the user's rows hold (a host whose clock ran
  -- ahead may have written them): every write made before this moment is older than the erasure.
  select pg_catalog.max(x) into c from (
    select pg_catalog.lpad(pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint::text, 15, '0')
           || '.0000000000.server' as x
    union all select public.memory_clock_after(pg_catalog.max(m.clock)) from public.memories m where m.user_id = p_user_id
    union all select public.memory_clock_after(pg_catalog.max(t.clock)) from public.memory_tombstones t where t.user_id = p_user_id
    union all select public.memory_clock_after(pg_catalog.max(s.config_clock)) from public.memory_settings s where s.user_id = p_user_id
    union all select public.memory_clock_after(pg_catalog.max(e.value ->> 'at'))
                from public.memory_settings s, pg_catalog.jsonb_each(s.secrets) e
               where s.user_id = p_user_id and e.value ->> 'at' ~ '^\d{15}\.\d{10}\.[A-Za-z0-9_-]{1,32}$'
    -- An earlier erasure of the same user (who came back): never go back behind it.
    union all select public.memory_clock_after(pg_catalog.max(a.detail ->> 'clock'))
                from public.memory_audit_log a where a.action = 'erase' and a.detail ->> 'marker' = p_marker) k;
  if pg_catalog.to_regclass('public.memory_embeddings') is not null then
    execute 'delete from public.memory_embeddings where user_id = $1' using p_user_id;
    get diagnostics n_embeddings = row_count;
  end if;
  delete from public.memories where user_id = p_user_id;
  get diagnostics n_memories = row_count;
  delete from public.memory_tombstones where user_id = p_user_id;
  get diagnostics n_tombstones = row_count;
  delete from public.memory_settings where user_id = p_user_id;
  get diagnostics n_settings = row_count;
  delete from public.memory_users where id = p_user_id;
  get diagnostics n_users = row_count;
  delete from public.memory_audit_log where user_id = p_user_id;
  get diagnostics n_audit = row_count;
  insert into public.memory_audit_log (user_id, tenant_id, action, component, detail)
  values (null, null, 'erase', coalesce(p_component, 'unknown'), jsonb_build_object('marker', p_marker, 'clock', c))
  returning at into at_;
  return jsonb_build_object('existed', n_users > 0 or n_audit > 0, 'erased_at', at_, 'clock', c,
                            'user', n_users > 0, 'memories', n_memories, 'tombstones', n_tombstones,
                            'settings', n_settings, 'audit', n_audit, 'embeddings', n_embeddings);
end;
$$;

-- The schema's version (see the baseline).
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261208000000'::text $$;

-- Function privileges, as in the baseline: nobody but the service role executes them.
do $$
declare
  f text;
  r text;
begin
  foreach f in array array['public.memory_store_batch(jsonb, text, integer, integer)',
                           'public.memory_retrieve_batch(jsonb, integer, boolean)'] loop
    execute format('revoke all on function %s from public', f);
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
      if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
        execute format('revoke all on function %s from %I', f, r);
      end if;
    end loop;
    if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
      execute format('grant execute on function %s to service_role', f);
    end if;
  end loop;
end $$;

notify pgrst, 'reload schema';
