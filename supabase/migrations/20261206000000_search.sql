-- livekit-user-memory: ranked search over one user's memories (memory_search).
--
-- Two signals, both available on every backend (PGlite ships pg_trgm and btree_gin as contrib
-- extensions, Debian's PostgreSQL and Supabase have them):
--  - full text over key and value with the language-neutral 'simple' configuration (names and
--    non-English words are kept as written, lower-cased; the parser splits snake_case keys), each
--    query word also as a prefix and by its English stem ("books" finds "book"), ranked by ts_rank
--    over a stored tsvector column;
--  - trigram word similarity (pg_trgm), as the fallback for the words full text does not find at
--    all (typos, partial words inside another word, scripts without spaces), plus containment;
-- fused by reciprocal rank fusion (score = sum of 1 / (60 + rank) over the two rankings).
--
-- Cost is bounded by design, not by the number of memories: each word's document frequency
-- among the user's memories is counted up to 100; a word in 100 or more of them (common for this
-- user: "name", "doctor", "book") still counts in the ranking but brings no candidates of its own,
-- so a search never ranks thousands of rows; the trigram index is asked only for words that no
-- memory holds, and a fuzzy word similar to more than 50 memories is dropped as not
-- distinctive. The plan is made for each call (plan_cache_mode): a generic plan, blind to the
-- user's size, would read a large user's memories one by one.
--
-- Indexes lead with user_id (btree_gin makes uuid a GIN key), so a search reads this user's
-- entries only and its cost does not grow with the number of users.
--
-- Every statement is idempotent, like the baseline's. The extensions go to schema `extensions`
-- (Supabase's convention) unless they are installed already, wherever that is; the function and
-- the trigram index name that schema explicitly, so the function keeps `search_path = ''`.

create schema if not exists extensions;
create extension if not exists pg_trgm with schema extensions;
create extension if not exists btree_gin with schema extensions;

-- The 'simple' tsvector of key and value, stored: the full-text ranking reads it instead of
-- parsing every matching memory's text again (ts_rank needs the tsvector, not only the index).
-- Adding it rewrites the table once; PostgreSQL fills it on every write.
alter table public.memories add column if not exists search_tsv tsvector
  generated always as (pg_catalog.to_tsvector('pg_catalog.simple'::regconfig, key || ' ' || value)) stored;
-- Its GIN index leads with user_id, like the trigram one below. (An unreleased draft of this
-- migration indexed the tsvector expression instead: dropped where it exists.)
drop index if exists public.memories_search_fts_idx;
create index if not exists memories_search_tsv_idx on public.memories using gin (user_id, search_tsv)
  with (gin_pending_list_limit = 256);
-- A small pending list (256 kB, not the default 4 MB; both GIN indexes): new entries wait there
-- until a vacuum or until it is full, and every search reads all of it (a manual ANALYZE does not
-- empty it). With 4 MB, a search after an import of 1,000 memories took 9 ms instead of 2 on
-- PostgreSQL; without a pending list (fastupdate off), inserting 100,000 memories in one
-- statement took 12 s instead of 4 (5 with 256 kB).
alter index public.memories_search_tsv_idx set (gin_pending_list_limit = 256);

-- (An earlier text of this migration redefined memory_list here as `returns setof public.memories`
-- with every column of the table named, which could not run again over a table with more columns.
-- memory_list is the lifecycle migration's now (20261207000000), with named result columns; the
-- checksum of that earlier text is accepted for databases that applied it: see
-- PREVIOUS_CHECKSUMS in memory/migrations/index.ts.)

do $$
declare
  trgm constant text := (select n.nspname from pg_catalog.pg_extension e
                           join pg_catalog.pg_namespace n on n.oid = e.extnamespace
                          where e.extname = 'pg_trgm');
  body text;
begin
  -- The service role calls memory_search, which is not SECURITY DEFINER: it needs to reach the
  -- trigram functions and operators. Only the service role: anon and authenticated get nothing.
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    execute format('grant usage on schema %I to service_role', trgm);
  end if;

  execute format('create index if not exists memories_search_trgm_idx on public.memories using gin '
                 '(user_id, (key || '' '' || value) %I.gin_trgm_ops) with (gin_pending_list_limit = 256)', trgm);
  alter index public.memories_search_trgm_idx set (gin_pending_list_limit = 256);

  body := $body$
create or replace function public.memory_search(p_user_id uuid, p_query text, p_category text default null, p_limit integer default 10)
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
       and (p_category is null or m.category = p_category)
       and m.search_tsv @@ coalesce(tsq_rare, tsq_common)
       and (tsq_rare is not null or (tsq_common is not null and common_words > 1))
    union
    select m.category, m.key, m.write_seq, m.search_tsv
      from public.memories m
     where m.user_id = p_user_id
       and (p_category is null or m.category = p_category)
       and m.search_tsv @@ tsq_common
       and tsq_rare is not null and tsq_common is not null
    union
    (select m.category, m.key, m.write_seq, m.search_tsv
       from public.memories m
      where tsq_rare is null and tsq_all is not null
        and m.user_id = p_user_id
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
      join public.memories m on m.user_id = p_user_id and m.category = c.category and m.key = c.key),
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
    join public.memories m on m.user_id = p_user_id and m.category = fused.category and m.key = fused.key
   order by fused.score desc, m.write_seq desc
   limit lim;
end;
$fn$;
$body$;
  execute pg_catalog.replace(body, '@extschema@', pg_catalog.quote_ident(trgm));
end $$;

-- Store many memories of one user at once, all or none (`lk-memory import`): one statement, so one
-- transaction; each is an online write exactly as memory_store makes it. p_memories is a JSON array
-- of {category, key, value}, validated by the caller like every write (and by the table's checks).
-- Returns how many were stored.
create or replace function public.memory_store_many(p_user_id uuid, p_memories jsonb)
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
  for e in select x.category, x.key, x.value
             from pg_catalog.jsonb_to_recordset(p_memories) as x(category text, key text, value text) loop
    if e.category is null or e.key is null or e.value is null then
      raise exception 'memory_store_many: every entry needs category, key and value' using errcode = '22023';
    end if;
    perform public.memory_store(p_user_id, e.category, e.key, e.value, null);
    n := n + 1;
  end loop;
  return n;
end;
$$;

-- The schema's version (see the baseline).
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261206000000'::text $$;

-- Function privileges, as in the baseline: nobody but the service role executes it.
do $$
declare
  f text;
  r text;
begin
  foreach f in array array['public.memory_search(uuid, text, text, integer)', 'public.memory_store_many(uuid, jsonb)'] loop
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
