-- livekit-user-memory: optional embeddings (vectors) beside the lexical search.
--
-- Vectors live in public.memory_embeddings, a side table that exists only where pgvector does
-- (Supabase; PostgreSQL with the pgvector package; the embedded database with
-- @electric-sql/pglite-pgvector installed). Without pgvector this migration still succeeds: it
-- creates only memory_embedding_status(), which says so, and search stays lexical.
--
-- One row per memory and embedding model: the vector of the memory's key and value, and the hash
-- of the text that was embedded (md5 of key, newline, value), so a changed value is seen as stale
-- and embedded again. The foreign key to memories cascades: a forgotten memory (or user) loses its
-- vectors in the same statement.
--
-- Vectors are passed as text ('[0.1, 0.2, ...]') and cast inside the functions, so no function
-- signature names the vector type and the same calls work on every backend, PostgREST included.
-- The vector column has no fixed dimension (it depends on the model); every comparison is between
-- vectors of the same model and dimension, and a search reads one user's rows of one model only
-- (the primary key leads with user_id and model), exactly, without an approximate index.
--
-- Every statement is idempotent. Privileges follow the baseline: RLS on, nothing for anon and
-- authenticated, select/insert/update/delete for service_role, functions executable by the service
-- role only.

do $$
declare
  vec text;
  body text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'vector')
     and exists (select 1 from pg_catalog.pg_available_extensions where name = 'vector') then
    begin
      create schema if not exists extensions;
      create extension if not exists vector with schema extensions;
    exception when others then
      -- Not allowed to create it (pgvector is not a trusted extension everywhere): stay lexical.
      raise notice 'livekit-user-memory: pgvector is available but could not be enabled (%): search stays lexical', sqlerrm;
    end;
  end if;
  vec := (select n.nspname from pg_catalog.pg_extension e
            join pg_catalog.pg_namespace n on n.oid = e.extnamespace
           where e.extname = 'vector');
  if vec is null then
    return;
  end if;

  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    execute format('grant usage on schema %I to service_role', vec);
  end if;

  execute format($t$
    create table if not exists public.memory_embeddings (
      user_id uuid not null,
      category text not null,
      key text not null,
      model text not null check (char_length(model) between 1 and 200),
      content_hash text not null,
      embedding %I.vector not null,
      embedded_at timestamptz not null default now(),
      primary key (user_id, model, category, key),
      foreign key (user_id, category, key) references public.memories (user_id, category, key)
        on delete cascade on update cascade
    )$t$, vec);
  -- The foreign key's own lookups (a deleted memory) need an index leading with its columns.
  create index if not exists memory_embeddings_memory_idx on public.memory_embeddings (user_id, category, key);
  alter table public.memory_embeddings enable row level security;

  revoke all on public.memory_embeddings from public;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    revoke all on public.memory_embeddings from anon;
  end if;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated') then
    revoke all on public.memory_embeddings from authenticated;
  end if;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    revoke all on public.memory_embeddings from service_role;
    grant select, insert, update, delete on public.memory_embeddings to service_role;
  end if;

  -- Memories of one user whose vector for p_model is missing or stale, oldest write first.
  body := $body$
create or replace function public.memory_embeddings_pending(p_user_id uuid, p_model text, p_limit integer default 32)
returns table (category text, key text, value text, content_hash text)
language sql
stable
set search_path = ''
as $fn$
  select m.category, m.key, m.value, pg_catalog.md5(m.key || E'\n' || m.value)
    from public.memories m
    left join public.memory_embeddings e
      on e.user_id = m.user_id and e.model = p_model and e.category = m.category and e.key = m.key
   where m.user_id = p_user_id
     and (e.content_hash is null or e.content_hash <> pg_catalog.md5(m.key || E'\n' || m.value))
   order by m.write_seq
   limit least(greatest(coalesce(p_limit, 32), 1), 256)
$fn$;

-- Store vectors of one user's memories: p_items is a JSON array of
-- {category, key, content_hash, embedding: [numbers]}. A vector is kept only when the memory still
-- holds the text it was made from (a value changed meanwhile is embedded again later, a forgotten
-- one is skipped). Returns how many were stored.
create or replace function public.memory_embeddings_put(p_user_id uuid, p_model text, p_items jsonb)
returns integer
language plpgsql
set search_path = ''
as $fn$
declare
  n integer;
begin
  if pg_catalog.jsonb_typeof(p_items) is distinct from 'array' then
    raise exception 'memory_embeddings_put expects a JSON array' using errcode = '22023';
  end if;
  insert into public.memory_embeddings as t (user_id, category, key, model, content_hash, embedding)
  select p_user_id, x.category, x.key, p_model, x.content_hash, (x.embedding::text)::@vec@.vector
    from pg_catalog.jsonb_to_recordset(p_items) as x(category text, key text, content_hash text, embedding jsonb)
    join public.memories m
      on m.user_id = p_user_id and m.category = x.category and m.key = x.key
     and pg_catalog.md5(m.key || E'\n' || m.value) = x.content_hash
  on conflict (user_id, model, category, key) do update
     set content_hash = excluded.content_hash, embedding = excluded.embedding, embedded_at = pg_catalog.now();
  get diagnostics n = row_count;
  return n;
end;
$fn$;

-- The memories of one user (only) nearest to p_embedding (text '[...]') by cosine similarity, among
-- the vectors of p_model that are current (their hash is the memory's) and of the same dimension.
create or replace function public.memory_embeddings_search(p_user_id uuid, p_model text, p_embedding text, p_category text default null, p_limit integer default 30)
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
   order by e.embedding operator(@vec@.<=>) q, m.write_seq desc
   limit least(greatest(coalesce(p_limit, 30), 0), 100);
end;
$fn$;
$body$;
  execute pg_catalog.replace(body, '@vec@', pg_catalog.quote_ident(vec));
end $$;

-- Whether vectors can be stored here: pgvector installable, enabled, and the table present. Always
-- created, so the doctor and the store can ask on any database.
create or replace function public.memory_embedding_status()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'installable', exists (select 1 from pg_catalog.pg_available_extensions where name = 'vector'),
    'extension_version', (select extversion from pg_catalog.pg_extension where extname = 'vector'),
    'table', pg_catalog.to_regclass('public.memory_embeddings') is not null)
$$;

-- The schema's version (see the baseline).
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261206100000'::text $$;

-- Function privileges, as in the baseline: nobody but the service role executes them.
do $$
declare
  f text;
  r text;
begin
  foreach f in array array['public.memory_embedding_status()',
                           'public.memory_embeddings_pending(uuid, text, integer)',
                           'public.memory_embeddings_put(uuid, text, jsonb)',
                           'public.memory_embeddings_search(uuid, text, text, text, integer)'] loop
    if pg_catalog.to_regprocedure(f) is null then
      continue; -- the vector functions exist only with pgvector
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
