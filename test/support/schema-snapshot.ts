import type { Queryable } from '../../memory/transports/transport.js';

/**
 * Everything about schema public that two databases must share to be "the same schema": tables and
 * sequences (kind, RLS, privileges), columns (type, default, nullability, privileges),
 * constraints, indexes, triggers, policies, and functions (signature with defaults, result, body,
 * volatility, SECURITY DEFINER, proconfig, privileges). Privileges are exploded and sorted, so the
 * order in which grants were made does not matter, and the grantor is left out; what a role may
 * do is what counts. Names only, never OIDs.
 */
export const SCHEMA_SNAPSHOT_SQL = `
with acl as (
  select c.oid, c.relname, x.grantee, x.privilege_type
    from pg_class c, aclexplode(coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char", c.relowner))) x
   where c.relnamespace = 'public'::regnamespace
)
select jsonb_build_object(
  'relations', (
    select coalesce(jsonb_agg(jsonb_build_object(
             'name', c.relname, 'kind', c.relkind, 'rls', c.relrowsecurity, 'force_rls', c.relforcerowsecurity,
             'acl', (select coalesce(jsonb_agg(g order by g), '[]'::jsonb)
                       from (select case when a.grantee = 0 then 'PUBLIC' else a.grantee::regrole::text end || ':' || a.privilege_type as g
                               from acl a where a.oid = c.oid) q))
           order by c.relname), '[]'::jsonb)
      from pg_class c
     where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')),
  'columns', (
    select coalesce(jsonb_agg(jsonb_build_object(
             'table', c.relname, 'n', a.attnum, 'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
             'not_null', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid),
             'acl', (select coalesce(jsonb_agg(g order by g), '[]'::jsonb)
                       from (select case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end || ':' || x.privilege_type as g
                               from aclexplode(a.attacl) x) q))
           order by c.relname, a.attnum), '[]'::jsonb)
      from pg_attribute a
      join pg_class c on c.oid = a.attrelid
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped),
  'constraints', (
    select coalesce(jsonb_agg(jsonb_build_object('table', c.relname, 'name', con.conname, 'def', pg_get_constraintdef(con.oid))
           order by c.relname, con.conname), '[]'::jsonb)
      from pg_constraint con join pg_class c on c.oid = con.conrelid
     where c.relnamespace = 'public'::regnamespace),
  'indexes', (
    select coalesce(jsonb_agg(indexdef order by indexname), '[]'::jsonb) from pg_indexes where schemaname = 'public'),
  'triggers', (
    select coalesce(jsonb_agg(pg_get_triggerdef(t.oid) order by c.relname, t.tgname), '[]'::jsonb)
      from pg_trigger t join pg_class c on c.oid = t.tgrelid
     where c.relnamespace = 'public'::regnamespace and not t.tgisinternal),
  'policies', (
    select coalesce(jsonb_agg(jsonb_build_object('table', tablename, 'name', policyname, 'cmd', cmd, 'permissive', permissive,
                                                 'roles', roles, 'using', qual, 'check', with_check)
           order by tablename, policyname), '[]'::jsonb)
      from pg_policies where schemaname = 'public'),
  'functions', (
    select coalesce(jsonb_agg(jsonb_build_object(
             'name', p.proname, 'args', pg_get_function_arguments(p.oid), 'result', pg_get_function_result(p.oid),
             'body', p.prosrc, 'volatility', p.provolatile, 'security_definer', p.prosecdef, 'config', p.proconfig,
             'acl', (select coalesce(jsonb_agg(g order by g), '[]'::jsonb)
                       from (select case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end || ':' || x.privilege_type as g
                               from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x) q))
           order by p.proname, pg_get_function_identity_arguments(p.oid)), '[]'::jsonb)
      from pg_proc p where p.pronamespace = 'public'::regnamespace)
) as snapshot`;

export interface SchemaSnapshot {
  relations: Array<{ name: string; kind: string; rls: boolean; acl: string[] }>;
  columns: unknown[];
  constraints: unknown[];
  indexes: string[];
  triggers: string[];
  policies: unknown[];
  functions: Array<{ name: string; args: string; result: string; config: string[] | null; acl: string[] }>;
}

export async function schemaSnapshot(db: Queryable): Promise<SchemaSnapshot> {
  const rows = await db.query<{ snapshot: SchemaSnapshot }>(SCHEMA_SNAPSHOT_SQL);
  return rows[0]!.snapshot;
}
