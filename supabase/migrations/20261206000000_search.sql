-- livekit-user-memory: ranked search over one user's memories (memory_search).
--
-- Two signals, both available on every backend (PGlite ships pg_trgm and btree_gin as contrib
-- extensions, Debian's PostgreSQL and Supabase have them):
--  - full text over key and value with the language-neutral 'simple' configuration (names and
--    non-English words are kept as written, lower-cased; the parser splits snake_case keys);
--  - trigram word similarity (pg_trgm) per query word, for typos, partial words and scripts
--    without spaces;
-- fused by reciprocal rank fusion (score = sum of 1 / (60 + rank) over the two rankings).
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

alter table public.memories add column if not exists search_tsv tsvector
  generated always as (pg_catalog.to_tsvector('pg_catalog.simple'::regconfig, key || ' ' || value)) stored;
drop index if exists public.memories_search_fts_idx;
create index if not exists memories_search_tsv_idx on public.memories using gin (user_id, search_tsv);

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
                 '(user_id, (key || '' '' || value) %I.gin_trgm_ops)', trgm);

  body := $body$
create or replace function public.memory_search(p_user_id uuid, p_query text, p_category text default null, p_limit integer default 10)
returns table (category text, key text, value text, created_at timestamptz, updated_at timestamptz, clock text, score double precision)
language plpgsql
stable
set search_path = ''
set pg_trgm.word_similarity_threshold = 0.3
set cpu_operator_cost = 0.5
as $fn$
#variable_conflict use_column
declare
  lim constant integer := least(greatest(coalesce(p_limit, 10), 0), 100);
  pool constant integer := greatest(least(greatest(coalesce(p_limit, 10), 0), 100) * 3, 30);
  per_word constant integer := 20;
  fuzzy_cap constant integer := 50;
  words text[];
  fuzzy text[] := '{}';
  tsq tsquery;
  q tsquery;
  w text;
  stem text;
begin
  if lim = 0 or p_query is null then
    return;
  end if;
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
  foreach w in array words loop
    if pg_catalog.char_length(w) >= 3 and w ~ '^[[:alnum:]]+$' then
      q := ('''' || w || ''':*')::tsquery;
      stem := (pg_catalog.ts_lexize('pg_catalog.english_stem'::regdictionary, w))[1];
      if stem is not null and pg_catalog.char_length(stem) >= 3 and stem <> w and pg_catalog.starts_with(w, stem) then
        q := q || ('''' || stem || ''':*')::tsquery;
      end if;
    else
      q := pg_catalog.plainto_tsquery('pg_catalog.simple'::regconfig, w);
    end if;
    tsq := case when tsq is null then q else tsq || q end;
    if pg_catalog.array_length(fuzzy, 1) is distinct from 8 and not exists (
         select 1 from public.memories m
          where m.user_id = p_user_id
            and (p_category is null or m.category = p_category)
            and m.search_tsv @@ q) then
      fuzzy := fuzzy || w;
    end if;
  end loop;

  return query
  with fts as (
    select m.category, m.key,
           pg_catalog.row_number() over (order by pg_catalog.ts_rank(m.search_tsv, tsq) desc, m.write_seq desc) as rnk
      from public.memories m
     where m.user_id = p_user_id
       and (p_category is null or m.category = p_category)
       and m.search_tsv @@ tsq
     order by rnk
     limit pool),
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
  trigram as (
    select m.category, m.key, m.write_seq,
           (select pg_catalog.sum(case when x.sim >= 0.3 then x.sim else 0 end)
              from (select greatest(@extschema@.word_similarity(w.word, m.key || ' ' || m.value),
                                    case when pg_catalog.strpos(pg_catalog.lower(m.key || ' ' || m.value), w.word) > 0 then 1 else 0 end) as sim
                      from pg_catalog.unnest(words[1:8]) w(word)) x) as sim
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
