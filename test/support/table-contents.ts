import type { BackendUnderTest } from './backends.js';

/**
 * Every row of every table in schema public, as JSON text, table by table, rows sorted: the
 * equivalent of a data dump for a backend `pg_dump` cannot reach (PGlite), and a way to compare
 * what a change did to the rows of everyone else. Generated and vector columns are included (they
 * are derived from values and must go with them).
 */
export async function tableContents(backend: Pick<BackendUnderTest, 'sql'>): Promise<Record<string, string[]>> {
  const tables = await backend.sql<{ name: string }>(
    `select c.relname as name from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1`,
  );
  const out: Record<string, string[]> = {};
  for (const { name } of tables) {
    const rows = await backend.sql<{ row: string }>(`select to_jsonb(t)::text as row from public.${name} t`);
    out[name] = rows.map((r) => r.row).sort();
  }
  return out;
}

/** The rows (as text) of `after` that are not in `before`, and those of `before` gone from `after`, per table. */
export function tableDiff(
  before: Record<string, string[]>,
  after: Record<string, string[]>,
): { added: Record<string, string[]>; removed: Record<string, string[]> } {
  const added: Record<string, string[]> = {};
  const removed: Record<string, string[]> = {};
  for (const table of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = new Set(before[table] ?? []);
    const a = new Set(after[table] ?? []);
    const plus = [...a].filter((r) => !b.has(r));
    const minus = [...b].filter((r) => !a.has(r));
    if (plus.length) added[table] = plus;
    if (minus.length) removed[table] = minus;
  }
  return { added, removed };
}
