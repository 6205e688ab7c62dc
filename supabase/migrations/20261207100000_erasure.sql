-- Memory lifecycle, parts 3 and 4: export (right of access and portability) and erasure (right to
-- be forgotten). New functions only; the tables are the baseline's and the lifecycle migration's.
--
-- The erasure record. After memory_erase_user nothing of the user is left in any table: not the
-- user row (and with it the Supabase Auth link and the consent), not a memory, tombstone,
-- embedding or settings row, and not one audit row about them (audit details name keys, secret
-- names and Auth ids). One new audit row says that an erasure happened, when (`at`), and which
-- component did it; its user_id is NULL, so no query by user id (inspect, export) finds it.
-- Its detail holds two values only:
--  - `marker`: a 64-hex-digit digest of the user id computed by the application (memory/erasure.ts):
--    an HMAC under a key derived from MEMORY_ENCRYPTION_KEY when one is configured (then a dump
--    alone cannot tell whether a given identity was erased), else a plain SHA-256 of the user id.
--    It is what lets a journal entry written before the erasure, on any host, be recognised and
--    dropped on replay instead of provisioning the user again (memory/replay.ts); the user id
--    itself would do that too, but a UUIDv5 of a guessable identity (a phone number) is that
--    identity in all but name.
--  - `clock`: the erasure's write clock, after every clock the user's rows held, so that replay
--    drops exactly the writes made before the erasure (a write made after it, by a caller who came
--    back, is a new user's and applies). The same rule as a forget's tombstone, for a whole user.
--
-- Every statement is idempotent (re-running every migration over the final schema must work).

-- Replay looks erasure markers up: only the erasure rows, by marker.
create index if not exists memory_audit_log_erasure_idx on public.memory_audit_log ((detail ->> 'marker'))
  where action = 'erase';

-- Everything the database holds about one user, for export: the user row with consent and Auth
-- link, every memory (expired ones included: they are still stored) with its times, the deletion
-- tombstones, settings rows (secrets as stored, encrypted: the application masks them), and every
-- audit entry about the user, oldest first. Null when the database holds nothing about the user
-- (no row and no audit entry). The export itself is audited (after reading, so the document does
-- not contain its own entry). One round trip.
create or replace function public.memory_export_user(p_user_id uuid, p_component text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  doc jsonb;
begin
  select jsonb_build_object(
    'user', (select jsonb_build_object(
                      'id', u.id, 'identity', u.identity, 'created_at', u.created_at,
                      'last_seen_at', u.last_seen_at, 'session_count', u.session_count,
                      'auth_user_id', u.auth_user_id, 'memory_consent', u.memory_consent,
                      'memory_consent_at', u.memory_consent_at)
               from public.memory_users u where u.id = p_user_id),
    'memories', (select coalesce(jsonb_agg(jsonb_build_object(
                          'category', m.category, 'key', m.key, 'value', m.value, 'created_at', m.created_at,
                          'updated_at', m.updated_at, 'expires_at', m.expires_at, 'clock', m.clock)
                        order by m.category, m.key), '[]'::jsonb)
                   from public.memories m where m.user_id = p_user_id),
    'tombstones', (select coalesce(jsonb_agg(jsonb_build_object('category', t.category, 'key', t.key, 'clock', t.clock)
                          order by t.category, t.key), '[]'::jsonb)
                     from public.memory_tombstones t where t.user_id = p_user_id),
    'settings', (select coalesce(jsonb_agg(jsonb_build_object('tenant_id', s.tenant_id, 'config', s.config, 'secrets', s.secrets,
                                                              'version', s.version, 'updated_at', s.updated_at)
                        order by s.tenant_id), '[]'::jsonb)
                   from public.memory_settings s where s.user_id = p_user_id),
    'audit', (select coalesce(jsonb_agg(jsonb_build_object('at', a.at, 'action', a.action, 'component', a.component,
                                                           'tenant_id', a.tenant_id, 'detail', a.detail)
                     order by a.at, a.id), '[]'::jsonb)
                from public.memory_audit_log a where a.user_id = p_user_id))
    into doc;
  if doc -> 'user' = 'null'::jsonb and doc -> 'audit' = '[]'::jsonb then
    return null;
  end if;
  insert into public.memory_audit_log (user_id, action, component, detail)
  values (p_user_id, 'export', coalesce(p_component, 'unknown'), '{}'::jsonb);
  return doc;
end;
$$;

-- Erase one user, in one transaction: embeddings, memories, tombstones, settings, the user row
-- (its Auth link and consent with it) and every audit row about the user; then one content-free
-- audit row (see the top of this file). p_marker: the application's erasure marker for this user.
-- p_only_if_stored: when true and the database holds nothing about the user, nothing is written
-- (no marker) and existed is false; the application passes false when this host's journal holds
-- writes of the user that were never in the database, so that other hosts drop theirs too.
-- Serialised with provisioning (the same advisory lock on the identity), so a session starting at
-- the same moment either finishes first and is erased, or provisions a new user afterwards.
-- Returns {existed, erased_at, clock, memories, tombstones, settings, audit, embeddings}.
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

-- The latest erasure clock among the markers given (one user's markers under every key the
-- caller knows), or null when none of them was erased. Replay drops an entry whose clock is not
-- after it.
create or replace function public.memory_erased(p_markers text[])
returns text
language sql
stable
set search_path = ''
as $$
  select pg_catalog.max(a.detail ->> 'clock')
    from public.memory_audit_log a
   where a.action = 'erase' and (a.detail ->> 'marker') = any (p_markers)
$$;

-- The schema's version (see the baseline).
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261207100000'::text $$;

-- Function privileges, as in the baseline: nobody but the service role executes them.
do $$
declare
  f text;
  r text;
begin
  foreach f in array array['public.memory_export_user(uuid, text)',
                           'public.memory_erase_user(uuid, text, text, boolean)',
                           'public.memory_erased(text[])'] loop
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
