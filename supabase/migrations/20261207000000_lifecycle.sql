-- Memory lifecycle: consent, retention and the per-user cap.
--
-- Columns first (this part is shared by the consent, retention, export and erasure code); the
-- functions that use them follow below.

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
-- evicts the least recently used.
alter table public.memories add column if not exists used_at timestamptz;

-- The purge finds expired rows without scanning every user's memories.
create index if not exists memories_expires_idx on public.memories (expires_at) where expires_at is not null;

-- The schema's version (see the baseline).
create or replace function public.memory_schema_version()
returns text
language sql
immutable
set search_path = ''
as $$ select '20261207000000'::text $$;
