-- Memory lifecycle: consent, retention and the per-user cap.
--
-- Columns first (this part is shared by the consent, retention, export and erasure code); the
-- functions that use them follow below.
--
-- Like every migration here, the whole file runs again over the final schema without changing it
-- (what `supabase db push` does after `lk-memory migrate`), and the earlier files run again over
-- it too. Functions whose arguments or result changed get a new signature (new arguments with
-- defaults, so that existing named and positional calls still resolve), and the old signature is
-- dropped here: re-running an earlier file re-creates its old overload for a moment, and this
-- file drops it again. Functions that return rows name their columns (`returns table`) rather
-- than `setof public.memories`, so that a column added later cannot break them.
--
-- Expiry: a memory is served only while it is live, by the database's clock (now(), the
-- statement's transaction time, the same for every row of one call):
--   (expires_at is null or expires_at > now())
--   and (p_retention_days is null or updated_at > now() - p_retention_days days)
-- written out in every read rather than called as a helper (a function with its own search_path
-- is never inlined, and would be called once per row). Retention is an argument, not a database
-- setting: each deployment passes MEMORY_RETENTION_DAYS, and nothing depends on session state a
-- transaction pooler would lose.

-- A user's memory consent. null: the caller never said, so the deployment's default applies
-- (MEMORY_CONSENT_DEFAULT=granted|ask|denied, resolved by the application). 'denied': nothing is
-- stored for this user, enforced here as well so that a journal replay made before the denial is
-- refused. 'granted': the caller agreed (or asked to be remembered again).
alter table public.memory_users add column if not exists memory_consent text;
alter table public.memory_users add column if not exists memory_consent_at timestamptz;
do $$
begin
  if not exists (select 1 from pg_catalog.pg_constraint
                  where conrelid = 'public.memory_users'::regclass and conname = 'memory_users_memory_consent_check') then
    alter table public.memory_users add constraint memory_users_memory_consent_check
      check (memory_consent in ('granted', 'denied'));
  end if;
end $$;

-- A memory's own expiry (store(..., { expiresAt }), the remember tool's expires_in_days). Expired
-- rows are never served, from the moment they expire, before any purge removes them.
alter table public.memories add column if not exists expires_at timestamptz;
-- When the memory was last written or read back to the caller: the cap (MEMORY_MAX_PER_USER)
-- evicts the least recently used. Null on rows written before this migration (updated_at stands
-- in). Reads touch it only where a cap is configured (memory_retrieve's p_touch).
alter table public.memories add column if not exists used_at timestamptz;
-- The order of those uses: a read that touches a memory takes the next write_seq here, so the
-- least recently used is the least greatest(write_seq, used_seq). A sequence rather than used_at,
-- because consecutive calls can get the same now() (PGlite's clock is coarse) and the cap must
-- still evict the right one.
alter table public.memories add column if not exists used_seq bigint;
-- When the caller last withdrew consent (forget_me, `lk-memory consent <identity> denied`): a
-- journal entry made before that moment is refused on replay even if the caller has granted
-- consent again since (memory_consent_at is the latest change, which a later grant moves).
alter table public.memory_users add column if not exists memory_denied_at timestamptz;

-- The purge finds expired rows without scanning every user's memories.
create index if not exists memories_expires_idx on public.memories (expires_at) where expires_at is not null;

-- Direct edits by end users get a clock (baseline); a write that changes only used_at (a read
-- that touches it) or expires_at is not an edit of what the memory says and must not reorder it.
-- End users can only update category, key and value (column privileges), so those are what count.
drop trigger if exists memories_clock_direct_edits on public.memories;
create trigger memories_clock_direct_edits
  before update on public.memories
  for each row when (new.clock is not distinct from old.clock
                     and (new.category, new.key, new.value) is distinct from (old.category, old.key, old.value))
  execute function public.memory_clock_unclocked_memory();

-- ---------------------------------------------------------------------------------------------
-- Old signatures (their replacements below take the lifecycle arguments, with defaults).
-- ---------------------------------------------------------------------------------------------
drop function if exists public.memory_start_session(uuid, text, integer, text);
drop function if exists public.memory_store(uuid, text, text, text, text);
drop function if exists public.memory_store_many(uuid, jsonb);
drop function if exists public.memory_retrieve(uuid, text, text);
drop function if exists public.memory_get(uuid, text, text);
drop function if exists public.memory_list(uuid, text, integer);
drop function if exists public.memory_search(uuid, text, text, integer);
drop function if exists public.memory_embeddings_search(uuid, text, text, text, integer);

-- ---------------------------------------------------------------------------------------------
-- Locks. Every store of a user takes a shared advisory lock on the user (namespace 1818979694,
-- key: hashtext of the user id; transaction-scoped, so safe behind a transaction pooler); with a
-- cap it takes it exclusively, so that one user's stores at the cap count and evict one after
-- another (100 concurrent stores leave exactly the cap). A consent change takes it exclusively:
-- stores in flight finish first and are erased with the rest, and stores after it see the new
-- state. Different users never wait for each other (beyond a hash collision, for one statement).
-- The advisory lock is in memory only: unlike a row lock on memory_users it writes nothing.
-- ---------------------------------------------------------------------------------------------

-- Session start: as the baseline's, plus the caller's consent state (null: the deployment default
-- applies) and only live memories.
create or replace function public.memory_start_session(p_user_id uuid, p_identity text, p_memory_limit integer,
                                                       p_tenant_id text default 'default', p_retention_days integer default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  u public.memory_users;
  recent jsonb;
  settings jsonb;
begin
  -- See the baseline: racing first sessions of one new user meet in the upsert.
  perform pg_catalog.pg_advisory_xact_lock(1818979693, pg_catalog.hashtext(p_identity));
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
           'created_at', m.created_at, 'updated_at', m.updated_at, 'clock', m.clock, 'expires_at', m.expires_at)
         order by m.write_seq desc), '[]'::jsonb)
    into recent
    from (select * from public.memories m
           where m.user_id = p_user_id
             and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
           order by m.write_seq desc
           limit greatest(p_memory_limit, 0)) m;

  select jsonb_build_object('tenant_id', s.tenant_id, 'config', s.config, 'secrets', s.secrets,
                            'version', s.version, 'updated_at', s.updated_at)
    into settings
    from public.memory_settings s
   where s.user_id = p_user_id and s.tenant_id = p_tenant_id;

  return jsonb_build_object(
    'user', jsonb_build_object(
      'id', u.id, 'identity', u.identity, 'created_at', u.created_at,
      'last_seen_at', u.last_seen_at, 'session_count', u.session_count,
      'memory_consent', u.memory_consent, 'memory_consent_at', u.memory_consent_at),
    'first_session', u.session_count = 1,
    'memories', recent,
    'settings', settings);
end;
$$;

-- Store a value: the baseline's write ordering (see its comment), plus
--  - consent: refused with LKM03 when the caller denied it (state 'denied', or no state and
--    p_consent, the deployment's MEMORY_CONSENT_DEFAULT, is 'denied'), with LKM04 when nobody has
--    asked yet (no state, p_consent 'ask'); a replay (p_clock given) made before the caller's
--    latest denial is refused with LKM03 whatever the state is now;
--  - p_expires_at: the memory's own expiry (null: none); a new write replaces the old expiry;
--  - p_max_per_user: the cap. When the user holds more than the cap after this write, the least
--    recently used others go (expired ones first, then by greatest(write_seq, used_seq)), each leaving
--    a tombstone with its clock (so an older journal entry cannot bring it back), audited. The
--    answer's `evicted` names the live ones, [{category, key}].
-- Costs over the baseline: one advisory lock and one primary-key read of the user row; with a cap,
-- for a new key only, a count of the user's rows (about the cap; a per-user counter would make it
-- O(1) but would have to be kept by every path that deletes memories).
create or replace function public.memory_store(p_user_id uuid, p_category text, p_key text, p_value text, p_clock text default null,
                                               p_expires_at timestamptz default null, p_consent text default 'granted',
                                               p_max_per_user integer default null, p_retention_days integer default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  written public.memories;
  current text;
  tomb text;
  c text := p_clock;
  consent text;
  denied_at timestamptz;
  n bigint;
  evicted jsonb;
begin
  if p_consent is null or p_consent not in ('granted', 'ask', 'denied') then
    raise exception 'p_consent must be granted, ask or denied, not %', p_consent using errcode = '22023';
  end if;
  if p_max_per_user is not null and p_max_per_user < 1 then
    raise exception 'p_max_per_user must be at least 1, not %', p_max_per_user using errcode = '22023';
  end if;
  if p_max_per_user is null then
    perform pg_catalog.pg_advisory_xact_lock_shared(1818979694, pg_catalog.hashtext(p_user_id::text));
  else
    perform pg_catalog.pg_advisory_xact_lock(1818979694, pg_catalog.hashtext(p_user_id::text));
  end if;
  select u.memory_consent, u.memory_denied_at into consent, denied_at from public.memory_users u where u.id = p_user_id;
  if not found then
    raise exception 'no memory user %', p_user_id using errcode = '23503';
  end if;
  consent := coalesce(consent, p_consent);
  if consent = 'denied' then
    raise exception 'memory consent denied: user % asked not to be remembered, so nothing is stored for them', p_user_id using errcode = 'LKM03';
  elsif consent <> 'granted' then
    raise exception 'memory consent not given yet: user % has not agreed to be remembered, so nothing is stored for them', p_user_id using errcode = 'LKM04';
  end if;
  if p_clock is not null and denied_at is not null
     and pg_catalog.substr(p_clock, 1, 15)::bigint <= pg_catalog.floor(extract(epoch from denied_at) * 1000)::bigint then
    raise exception 'memory consent denied: this write of user % was made before they asked not to be remembered', p_user_id using errcode = 'LKM03';
  end if;

  -- From here on as the baseline's memory_store (its comment explains the clocks).
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
    return jsonb_build_object('applied', false, 'clock', p_clock, 'updated_at', null, 'current_clock', tomb);
  end if;
  insert into public.memories as m (user_id, category, key, value, clock, expires_at, used_at)
  values (p_user_id, p_category, p_key, p_value, c, p_expires_at, now())
  on conflict (user_id, category, key) do update
    set value = excluded.value, updated_at = now(), write_seq = nextval('public.memories_write_seq'),
        expires_at = excluded.expires_at, used_at = excluded.used_at,
        clock = case when p_clock is not null then excluded.clock
                     else greatest(excluded.clock,
                       case when pg_catalog.substr(m.clock, 17, 10)::bigint >= 9999999999
                            then pg_catalog.lpad((pg_catalog.substr(m.clock, 1, 15)::bigint + 1)::text, 15, '0') || '.0000000000.server'
                            else pg_catalog.substr(m.clock, 1, 15) || '.' || pg_catalog.lpad((pg_catalog.substr(m.clock, 17, 10)::bigint + 1)::text, 10, '0') || '.server'
                       end) end
    where p_clock is null or m.clock < excluded.clock
  returning * into written;
  if written.user_id is null then
    select m.clock into current from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key;
    return jsonb_build_object('applied', false, 'clock', p_clock, 'updated_at', null, 'current_clock', greatest(current, tomb));
  end if;

  -- Only a new key can take the user over the cap (a new row has created_at = updated_at; an
  -- update that happens to look the same only costs the count). Counted in full, not up to
  -- cap + 1: after the cap was lowered, one store brings the user down to it.
  if p_max_per_user is not null and written.created_at = written.updated_at then
    select pg_catalog.count(*) into n from public.memories m where m.user_id = p_user_id;
    if n > p_max_per_user then
      with victims as (
        select m.category, m.key
          from public.memories m
         where m.user_id = p_user_id and not (m.category = p_category and m.key = p_key)
         order by ((m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))) asc,
                  greatest(m.write_seq, m.used_seq)
         limit n - p_max_per_user),
      gone as (
        delete from public.memories m
         using victims v
         where m.user_id = p_user_id and m.category = v.category and m.key = v.key
        returning m.category, m.key, m.clock, ((m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))) as live),
      tombstones as (
        insert into public.memory_tombstones as t (user_id, category, key, clock)
        select p_user_id, g.category, g.key, g.clock from gone g
        on conflict (user_id, category, key) do update set clock = greatest(t.clock, excluded.clock))
      select coalesce(jsonb_agg(jsonb_build_object('category', g.category, 'key', g.key) order by g.category, g.key)
                        filter (where g.live), '[]'::jsonb)
        into evicted
        from gone g;
      insert into public.memory_audit_log (user_id, action, component, detail)
      values (p_user_id, 'memory.evicted', 'memory_store',
              jsonb_build_object('cap', p_max_per_user, 'evicted', n - p_max_per_user));
    end if;
  end if;

  -- expires_at and evicted only when there are any: the answer is otherwise the baseline's.
  return pg_catalog.jsonb_strip_nulls(jsonb_build_object(
    'applied', true, 'clock', written.clock, 'updated_at', written.updated_at, 'expires_at', written.expires_at,
    'evicted', case when pg_catalog.jsonb_array_length(evicted) > 0 then evicted end));
end;
$$;

-- Store many memories of one user at once, all or none (`lk-memory import`, UserMemory.storeMany):
-- each entry is memory_store with the same consent, cap and retention, so a refusal of any undoes
-- all. p_memories: a JSON array of {category, key, value, expires_at?}. Returns how many were stored.
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
             from pg_catalog.jsonb_to_recordset(p_memories) as x(category text, key text, value text, expires_at timestamptz) loop
    if e.category is null or e.key is null or e.value is null then
      raise exception 'memory_store_many: every entry needs category, key and value' using errcode = '22023';
    end if;
    perform public.memory_store(p_user_id, e.category, e.key, e.value, null, e.expires_at, p_consent, p_max_per_user, p_retention_days);
    n := n + 1;
  end loop;
  return n;
end;
$$;

-- One value, if live. p_touch (a cap is configured): the read counts as a use for the cap's LRU
-- order (an update of used_at only, which the direct-edit trigger ignores).
create or replace function public.memory_retrieve(p_user_id uuid, p_category text, p_key text,
                                                  p_retention_days integer default null, p_touch boolean default false)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v text;
begin
  if p_touch then
    update public.memories m set used_at = now(), used_seq = nextval('public.memories_write_seq')
     where m.user_id = p_user_id and m.category = p_category and m.key = p_key
       and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
    returning m.value into v;
  else
    select m.value into v from public.memories m
     where m.user_id = p_user_id and m.category = p_category and m.key = p_key
       and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days));
  end if;
  return v;
end;
$$;

-- A read that also says how new the value is, for merging pending journal entries over it. An
-- expired value is not served (null), but its clock still orders older pending writes below it.
create or replace function public.memory_get(p_user_id uuid, p_category text, p_key text, p_retention_days integer default null)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'value', (select m.value from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key
                and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))),
    'clock', (select m.clock from public.memories m where m.user_id = p_user_id and m.category = p_category and m.key = p_key),
    'deleted', (select t.clock from public.memory_tombstones t where t.user_id = p_user_id and t.category = p_category and t.key = p_key));
$$;

-- Live memories, newest first. Named columns: a column added to memories later changes nothing here.
create or replace function public.memory_list(p_user_id uuid, p_category text, p_limit integer, p_retention_days integer default null)
returns table (category text, key text, value text, created_at timestamptz, updated_at timestamptz, clock text, expires_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select m.category, m.key, m.value, m.created_at, m.updated_at, m.clock, m.expires_at
    from public.memories m
   where m.user_id = p_user_id and (p_category is null or m.category = p_category)
     and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
   order by m.write_seq desc
   limit p_limit;
$$;

-- The search migration's memory_search, serving live memories only: every read of memories in it
-- has the expiry condition, so an expired memory is neither a candidate nor counted in a word's
-- document frequency.
do $$
declare
  trgm constant text := (select n.nspname from pg_catalog.pg_extension e
                           join pg_catalog.pg_namespace n on n.oid = e.extnamespace
                          where e.extname = 'pg_trgm');
  body text;
begin
  body := $body$
create or replace function public.memory_search(p_user_id uuid, p_query text, p_category text default null, p_limit integer default 10,
                                            p_retention_days integer default null)
returns table (category text, key text, value text, created_at timestamptz, updated_at timestamptz, clock text, score double precision)
language plpgsql
stable
set search_path = ''
set pg_trgm.word_similarity_threshold = 0.3
-- The planner takes the trigram and full-text operators for cheap (cost 1, like =), so for a user
-- with many memories it would read all of them through the primary key and evaluate the operator
-- on each instead of asking the GIN indexes. Operators priced nearer to what they cost make it
-- choose the indexes; small users still go by the primary key. Every call is planned with its
-- values (the user, the words): a cached generic plan took 200-400 ms on PGlite for a large user.
set cpu_operator_cost = 0.5
set plan_cache_mode = force_custom_plan
as $fn$
#variable_conflict use_column
declare
  lim constant integer := least(greatest(coalesce(p_limit, 10), 0), 100);
  -- Candidates taken from each ranking before fusion.
  pool constant integer := greatest(least(greatest(coalesce(p_limit, 10), 0), 100) * 3, 30);
  -- Memories taken per fuzzy word from the trigram index.
  per_word constant integer := 20;
  -- A word found (as a word or a prefix) in this many of the user's memories is common: it still
  -- counts in the ranking, but does not bring candidates of its own (see below).
  common constant integer := 100;
  -- A fuzzy word similar (0.3) to more than this many memories is not distinctive enough to look
  -- for as a typo (a misspelt name is like a few; "remind" is like every "remember").
  fuzzy_cap constant integer := 50;
  words text[];
  -- Per word: its full-text query, the text that "contains" it, its document frequency.
  qs tsquery[] := '{}';
  tokens text[] := '{}';
  df integer[];
  fuzzy text[] := '{}';
  tsq_all tsquery;    -- any word: the full-text ranking
  tsq_rare tsquery;   -- any word that is neither common nor fuzzy
  tsq_common tsquery; -- every common word
  q tsquery;
  w text;
  stem text;
  i integer;
  common_words integer := 0;
begin
  if lim = 0 or p_query is null then
    return;
  end if;
  -- The query's words as the index sees them: the 'simple' parser's lexemes (lower-case, snake_case
  -- split), in order of first appearance, at most 16, without English function words (a question
  -- such as "what is my dentist's name" would otherwise match everything) and single ASCII letters
  -- or digits. Operators of the full-text syntax (& | ! <-> :*) are not words: the parser drops them.
  select pg_catalog.array_agg(x.lexeme order by x.pos)
    into words
    from (select t.lexeme, pg_catalog.min(p.p) as pos
            from pg_catalog.unnest(pg_catalog.to_tsvector('pg_catalog.simple'::regconfig, pg_catalog.left(p_query, 4096))) t,
                 pg_catalog.unnest(t.positions) p(p)
           where pg_catalog.ts_lexize('pg_catalog.english_stem'::regdictionary, t.lexeme) is distinct from '{}'::text[]
             and t.lexeme !~ '^[a-z0-9]$'
           group by t.lexeme
           order by pos
           limit 16) x;
  if words is null then
    return;
  end if;
  -- Each word as a prefix when it is plain letters and digits, and also its English stem as a
  -- prefix when the stem begins the word ("books" finds "book", "calling" finds "call"), which
  -- only widens the match for other languages. Built from the parser's lexemes, quoted: user text
  -- never reaches to_tsquery's syntax.
  foreach w in array words loop
    stem := null;
    if pg_catalog.char_length(w) >= 3 and w ~ '^[[:alnum:]]+$' then
      q := ('''' || w || ''':*')::tsquery;
      stem := (pg_catalog.ts_lexize('pg_catalog.english_stem'::regdictionary, w))[1];
      if stem is not null and pg_catalog.char_length(stem) >= 3 and stem <> w and pg_catalog.starts_with(w, stem) then
        q := q || ('''' || stem || ''':*')::tsquery;
      else
        stem := null;
      end if;
    else
      q := pg_catalog.plainto_tsquery('pg_catalog.simple'::regconfig, w);
    end if;
    qs := qs || q;
    tokens := tokens || coalesce(stem, w);
  end loop;
  -- How many of the user's memories hold each word, counted up to `common` (the GIN index, then
  -- at most `common` rows per word).
  select pg_catalog.array_agg(c.n order by x.i)
    into df
    from pg_catalog.unnest(qs) with ordinality x(q, i),
         lateral (select pg_catalog.count(*)::integer as n
                    from (select 1 from public.memories m
                           where m.user_id = p_user_id
                             and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
                             and (p_category is null or m.category = p_category)
                             and m.search_tsv @@ x.q
                           limit common) s) c;
  for i in 1 .. pg_catalog.array_length(words, 1) loop
    if df[i] = 0 then
      if pg_catalog.array_length(fuzzy, 1) is distinct from 8 then
        fuzzy := fuzzy || words[i];
      end if;
      continue;
    end if;
    tsq_all := case when tsq_all is null then qs[i] else tsq_all || qs[i] end;
    if df[i] < common then
      tsq_rare := case when tsq_rare is null then qs[i] else tsq_rare || qs[i] end;
    else
      tsq_common := case when tsq_common is null then qs[i] else tsq_common && qs[i] end;
      common_words := common_words + 1;
    end if;
  end loop;

  return query
  -- Full text, ranked by ts_rank over every word. Its candidates are the memories that hold a word
  -- that is not common, and those that hold all the common words (when there are several); when
  -- every word is common, also the most recent memories that hold any. So a word found in
  -- thousands of memories never makes the search rank thousands of rows.
  with fts_candidates as (
    select m.category, m.key, m.write_seq, m.search_tsv
      from public.memories m
     where m.user_id = p_user_id
       and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
       and (p_category is null or m.category = p_category)
       and m.search_tsv @@ coalesce(tsq_rare, tsq_common)
       and (tsq_rare is not null or (tsq_common is not null and common_words > 1))
    union
    select m.category, m.key, m.write_seq, m.search_tsv
      from public.memories m
     where m.user_id = p_user_id
       and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
       and (p_category is null or m.category = p_category)
       and m.search_tsv @@ tsq_common
       and tsq_rare is not null and tsq_common is not null
    union
    (select m.category, m.key, m.write_seq, m.search_tsv
       from public.memories m
      where tsq_rare is null and tsq_all is not null
        and m.user_id = p_user_id
        and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
        and (p_category is null or m.category = p_category)
        and m.search_tsv @@ tsq_all
      order by m.write_seq desc
      limit pool)),
  fts as (
    select f.category, f.key,
           pg_catalog.row_number() over (order by pg_catalog.ts_rank(f.search_tsv, tsq_all) desc, f.write_seq desc) as rnk
      from fts_candidates f
     order by rnk
     limit pool),
  -- Candidates of the trigram ranking: the full-text ones, and for each fuzzy word (one that no
  -- memory holds: a typo, a partial word inside another, a word of a script without spaces) the
  -- memories most similar to it (the trigram index), plus, for a word in a script written without
  -- spaces (Japanese, Chinese, Korean), the memories that contain it (a 2-character name has no
  -- trigram to look up).
  candidates as (
    select f.category, f.key from fts f
    union
    select c.category, c.key
      from pg_catalog.unnest(fuzzy) qw(word),
           lateral (select s.category, s.key
                      from (select m.category, m.key, m.write_seq,
                                   @extschema@.word_similarity(qw.word, m.key || ' ' || m.value) as sim,
                                   pg_catalog.count(*) over () as n
                              from (select m.category, m.key, m.value, m.write_seq
                                      from public.memories m
                                     where m.user_id = p_user_id
                                       and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
                                       and (p_category is null or m.category = p_category)
                                       and qw.word operator(@extschema@.<%) (m.key || ' ' || m.value)
                                     limit fuzzy_cap + 1) m) s
                     where s.n <= fuzzy_cap
                     order by s.sim desc, s.write_seq desc
                     limit per_word) c
    union
    select c.category, c.key
      from pg_catalog.unnest(fuzzy) qw(word),
           lateral (select m.category, m.key
                      from public.memories m
                     where qw.word ~ '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]'
                       and m.user_id = p_user_id
                       and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
                       and (p_category is null or m.category = p_category)
                       and pg_catalog.strpos(pg_catalog.lower(m.key || ' ' || m.value), qw.word) > 0
                     order by m.write_seq desc
                     limit per_word) c),
  -- Every candidate scored alike: for each of the first 8 words, 1 when the text contains it (or
  -- its stem), else for a fuzzy word its trigram similarity from 0.3 up; summed over the words.
  trigram as (
    select m.category, m.key, m.write_seq,
           (select pg_catalog.sum(case when pg_catalog.strpos(pg_catalog.lower(m.key || ' ' || m.value), x.token) > 0 then 1
                                       when x.word = any (fuzzy) then
                                         (select case when s >= 0.3 then s else 0 end
                                            from @extschema@.word_similarity(x.word, m.key || ' ' || m.value) s)
                                       else 0 end)
              from rows from (pg_catalog.unnest(words[1:8]), pg_catalog.unnest(tokens[1:8])) x(word, token)) as sim
      from candidates c
      join public.memories m on m.user_id = p_user_id and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
                            and m.category = c.category and m.key = c.key),
  trigram_ranked as (
    select t.category, t.key, pg_catalog.row_number() over (order by t.sim desc, t.write_seq desc) as rnk
      from trigram t
     where t.sim > 0
     order by rnk
     limit pool),
  fused as (
    select coalesce(f.category, t.category) as category, coalesce(f.key, t.key) as key,
           coalesce(1.0 / (60 + f.rnk), 0) + coalesce(1.0 / (60 + t.rnk), 0) as score
      from fts f
      full join trigram_ranked t on t.category = f.category and t.key = f.key)
  select m.category, m.key, m.value, m.created_at, m.updated_at, m.clock, fused.score::double precision
    from fused
    join public.memories m on m.user_id = p_user_id and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
                            and m.category = fused.category and m.key = fused.key
   order by fused.score desc, m.write_seq desc
   limit lim;
end;
$fn$;

$body$;
  execute pg_catalog.replace(body, '@extschema@', pg_catalog.quote_ident(trgm));
end $$;

-- The embeddings migration's vector search, serving live memories only (where pgvector is).
do $$
declare
  vec text := (select n.nspname from pg_catalog.pg_extension e
                 join pg_catalog.pg_namespace n on n.oid = e.extnamespace
                where e.extname = 'vector');
  body text;
begin
  if vec is null or pg_catalog.to_regclass('public.memory_embeddings') is null then
    return;
  end if;
  body := $body$
create or replace function public.memory_embeddings_search(p_user_id uuid, p_model text, p_embedding text, p_category text default null,
                                                           p_limit integer default 30, p_retention_days integer default null)
returns table (category text, key text, value text, created_at timestamptz, updated_at timestamptz, clock text, similarity double precision)
language plpgsql
stable
set search_path = ''
as $fn$
#variable_conflict use_column
declare
  q @vec@.vector := p_embedding::@vec@.vector;
begin
  return query
  select m.category, m.key, m.value, m.created_at, m.updated_at, m.clock,
         (1 - (e.embedding operator(@vec@.<=>) q))::double precision as similarity
    from public.memory_embeddings e
    join public.memories m on m.user_id = e.user_id and m.category = e.category and m.key = e.key
   where e.user_id = p_user_id
     and e.model = p_model
     and (p_category is null or e.category = p_category)
     and @vec@.vector_dims(e.embedding) = @vec@.vector_dims(q)
     and e.content_hash = pg_catalog.md5(m.key || E'\n' || m.value)
     and (m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days))
   order by e.embedding operator(@vec@.<=>) q, m.write_seq desc
   limit least(greatest(coalesce(p_limit, 30), 0), 100);
end;
$fn$;
$body$;
  execute pg_catalog.replace(body, '@vec@', pg_catalog.quote_ident(vec));
end $$;

-- Record the caller's consent (`forget_me` / `remember_me` tools, `lk-memory consent`),
-- provisioning the user if new (a caller may opt out before their first session). 'denied' also
-- erases everything stored for them: their memories (their vectors go with them) and their
-- tombstones (keys of what they once deleted), so that nothing of their memory is left; journal
-- entries made before this moment are refused on replay (memory_denied_at). 'granted' records
-- their agreement. Audited (consent.denied / consent.granted, with counts, never content).
-- Returns {consent, previous, consent_at, erased, tombstones}.
create or replace function public.memory_set_consent(p_user_id uuid, p_identity text, p_consent text, p_component text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  u public.memory_users;
  erased bigint := 0;
  tombs bigint := 0;
begin
  if p_consent is null or p_consent not in ('granted', 'denied') then
    raise exception 'consent must be granted or denied, not %', p_consent using errcode = '22023';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(1818979693, pg_catalog.hashtext(p_identity)); -- see memory_start_session
  insert into public.memory_users (id, identity) values (p_user_id, p_identity)
  on conflict (id) do nothing;
  -- Stores of this user in flight finish first (and are erased below); later ones see the new state.
  perform pg_catalog.pg_advisory_xact_lock(1818979694, pg_catalog.hashtext(p_user_id::text));
  select * into u from public.memory_users where id = p_user_id for update;
  if u.identity <> p_identity then
    raise exception 'user id % belongs to another identity', p_user_id using errcode = 'LKM01';
  end if;
  if p_consent = 'denied' then
    with gone as (delete from public.memories m where m.user_id = p_user_id returning 1)
    select pg_catalog.count(*) into erased from gone;
    with gone as (delete from public.memory_tombstones t where t.user_id = p_user_id returning 1)
    select pg_catalog.count(*) into tombs from gone;
    update public.memory_users
       set memory_consent = 'denied', memory_consent_at = now(), memory_denied_at = now()
     where id = p_user_id;
  else
    update public.memory_users set memory_consent = 'granted', memory_consent_at = now() where id = p_user_id;
  end if;
  insert into public.memory_audit_log (user_id, action, component, detail)
  values (p_user_id, 'consent.' || p_consent, coalesce(p_component, 'unknown'),
          jsonb_build_object('previous', u.memory_consent, 'erased', erased, 'tombstones', tombs));
  return jsonb_build_object('consent', p_consent, 'previous', u.memory_consent, 'consent_at', now(),
                            'erased', erased, 'tombstones', tombs);
end;
$$;

-- One batch of the purge (`lk-memory purge`, the worker's background purge): at most p_batch
-- expired memories (their own expiry passed, or not updated for p_retention_days) and at most
-- p_batch tombstones whose clock is older than p_tombstone_max_age_days. One statement each, in
-- this call's one short transaction; the caller repeats until a batch comes back short, so no
-- lock is held for long and concurrent stores wait for one batch at most. A purged memory leaves
-- a tombstone with its clock (an older journal entry must not bring it back); tombstones are kept
-- until no journal entry can be older than they are (the application refuses to replay entries
-- older than the journal's maximum age, and passes that age plus the clock drift it allows).
-- Every purged memory is audited, per user: memory.expired with the count.
-- Returns {memories, tombstones}.
create or replace function public.memory_purge(p_retention_days integer, p_tombstone_max_age_days integer, p_batch integer, p_component text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  lim constant integer := least(greatest(coalesce(p_batch, 1000), 1), 10000);
  n_memories bigint;
  n_tombstones bigint := 0;
  cutoff_ms bigint;
begin
  if p_retention_days is not null and p_retention_days < 1 then
    raise exception 'p_retention_days must be at least 1, not %', p_retention_days using errcode = '22023';
  end if;
  with victims as (
    (select m.user_id, m.category, m.key from public.memories m
      where m.expires_at <= now()
      limit lim)
    union
    (select m.user_id, m.category, m.key from public.memories m
      where p_retention_days is not null and m.updated_at <= now() - pg_catalog.make_interval(days => p_retention_days)
      limit lim)),
  gone as (
    -- The expiry is checked again on the row itself: a store that renewed it meanwhile wins.
    delete from public.memories m
     using (select * from victims limit lim) v
     where m.user_id = v.user_id and m.category = v.category and m.key = v.key
       and not ((m.expires_at is null or m.expires_at > pg_catalog.now()) and (p_retention_days is null or m.updated_at > pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)))
    returning m.user_id, m.category, m.key, m.clock),
  tombstones as (
    insert into public.memory_tombstones as t (user_id, category, key, clock)
    select g.user_id, g.category, g.key, g.clock from gone g
    on conflict (user_id, category, key) do update set clock = greatest(t.clock, excluded.clock)),
  audit as (
    insert into public.memory_audit_log (user_id, action, component, detail)
    select g.user_id, 'memory.expired', coalesce(p_component, 'unknown'), jsonb_build_object('memories', pg_catalog.count(*))
      from gone g group by g.user_id)
  select pg_catalog.count(*) into n_memories from gone;

  if p_tombstone_max_age_days is not null then
    cutoff_ms := pg_catalog.floor(extract(epoch from now() - pg_catalog.make_interval(days => p_tombstone_max_age_days)) * 1000)::bigint;
    with gone as (
      delete from public.memory_tombstones t
       where t.ctid = any (array(select x.ctid from public.memory_tombstones x
                                  where pg_catalog.substr(x.clock, 1, 15)::bigint < cutoff_ms
                                  limit lim))
         and pg_catalog.substr(t.clock, 1, 15)::bigint < cutoff_ms
      returning 1)
    select pg_catalog.count(*) into n_tombstones from gone;
  end if;
  return jsonb_build_object('memories', n_memories, 'tombstones', n_tombstones);
end;
$$;

-- The schema's version (see the baseline).
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261207000000'::text $$;

-- Function privileges, as in the baseline: nobody but the service role executes them.
do $$
declare
  f text;
  r text;
begin
  foreach f in array array[
    'public.memory_start_session(uuid, text, integer, text, integer)',
    'public.memory_store(uuid, text, text, text, text, timestamptz, text, integer, integer)',
    'public.memory_store_many(uuid, jsonb, text, integer, integer)',
    'public.memory_retrieve(uuid, text, text, integer, boolean)',
    'public.memory_get(uuid, text, text, integer)',
    'public.memory_list(uuid, text, integer, integer)',
    'public.memory_search(uuid, text, text, integer, integer)',
    'public.memory_embeddings_search(uuid, text, text, text, integer, integer)',
    'public.memory_set_consent(uuid, text, text, text)',
    'public.memory_purge(integer, integer, integer, text)'] loop
    if pg_catalog.to_regprocedure(f) is null then
      continue; -- the vector search exists only with pgvector
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
  end loop;
end $$;

notify pgrst, 'reload schema';
