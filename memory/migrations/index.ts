import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryError, isMemoryError } from '../errors.js';
import type { Queryable, SqlTransport } from '../transports/transport.js';

export interface Migration {
  /** The timestamp prefix of the file name, e.g. 20261123000000. */
  version: string;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  current: string | undefined;
}

const FILE_PATTERN = /^(\d{14})_([a-z0-9_]+)\.sql$/;
// Any fixed number: it only has to be the same for every process that migrates.
const MIGRATION_LOCK_KEY = 7_311_942_204;

/**
 * The migrations live in supabase/migrations so that the Supabase CLI applies the very same files;
 * find that folder from here whether running from source (memory/migrations) or from dist/.
 */
export function defaultMigrationsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'supabase', 'migrations');
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new MemoryError('MIGRATION_FAILED', 'cannot find the supabase/migrations folder of livekit-user-memory');
    dir = parent;
  }
}

export function loadMigrations(dir: string = defaultMigrationsDir()): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((file) => FILE_PATTERN.test(file))
    .sort()
    .map((file) => {
      const [, version, name] = FILE_PATTERN.exec(file)!;
      const sql = fs.readFileSync(path.join(dir, file), 'utf8');
      return { version: version!, name: name!, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/**
 * Versions of earlier, never released migrations that a later one replaces (its file holds the
 * whole schema and is written to run over theirs as well). A database that applied them runs the
 * replacement like any pending migration, and their tracking rows are then removed, so that the
 * database looks exactly like one migrated from the replacement alone.
 */
export const SUPERSEDED: Readonly<Record<string, readonly string[]>> = {
  '20261126000000': ['20261123000000', '20261124000000', '20261125000000'],
};

/**
 * Earlier texts of migrations that were edited after release, by version: the checksums a database
 * may have recorded for a file whose current text differs only in ways that leave such a database
 * correct. A recorded checksum listed here is accepted (and replaced by the current one); any
 * other difference is still MIGRATION_FAILED. Keep it short: every entry needs its reason.
 */
export const PREVIOUS_CHECKSUMS: Readonly<Record<string, readonly string[]>> = {
  // 20261206000000_search redefined memory_list naming every column of memories, so the file could
  // not run again (`supabase db push` after `lk-memory migrate`) once the lifecycle migration added
  // columns. That statement was removed; the lifecycle migration drops the function it made and
  // defines memory_list anew, so a database that ran the earlier text ends up the same.
  '20261206000000': ['ced9985347cd65e1a4c244f2d76150476f19f4dea6ff0c2c0ec502c11b292696'],
};

// RLS with no policy: only the owner (who migrates) and roles that bypass RLS reach the rows. On
// Supabase the baseline migration also revokes what default privileges gave anon and
// authenticated here; RLS is enabled at creation too, so that the table is never open between
// this statement and that migration, whatever runs in between.
const TRACKING_TABLE = `create table if not exists public.memory_schema_migrations (
  version text primary key,
  name text not null,
  checksum text not null,
  applied_at timestamptz not null default now()
);
alter table public.memory_schema_migrations enable row level security`;

async function appliedMigrations(tx: Queryable): Promise<Map<string, string>> {
  const rows = await tx.query<{ version: string; checksum: string }>(
    'select version, checksum from public.memory_schema_migrations',
  );
  return new Map(rows.map((row) => [row.version, row.checksum]));
}

/**
 * Apply every pending migration in one transaction, under an advisory lock so that workers that
 * start together do not race. Applied files must not change: a different checksum is an error.
 */
export async function migrate(
  transport: SqlTransport,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrationResult> {
  try {
    return await transport.transaction(async (tx) => {
      await tx.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await tx.exec(TRACKING_TABLE);
      const applied = await appliedMigrations(tx);
      const done: string[] = [];
      for (const migration of migrations) {
        const checksum = applied.get(migration.version);
        if (checksum !== undefined) {
          if (checksum !== migration.checksum && PREVIOUS_CHECKSUMS[migration.version]?.includes(checksum)) {
            await tx.query('update public.memory_schema_migrations set checksum = $2 where version = $1', [
              migration.version,
              migration.checksum,
            ]);
          } else if (checksum !== migration.checksum) {
            throw new MemoryError(
              'MIGRATION_FAILED',
              `migration ${migration.version}_${migration.name} was changed after it was applied; add a new migration instead of editing an applied one`,
            );
          }
          continue;
        }
        await tx.exec(migration.sql);
        await tx.query('insert into public.memory_schema_migrations (version, name, checksum) values ($1, $2, $3)', [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        done.push(migration.version);
      }
      // The replacement ran (now or before): the rows of what it replaces only mislead
      // migrationStatus and the doctor. Rows only, so nothing is sent when there are none.
      const stale = migrations.flatMap((m) => SUPERSEDED[m.version] ?? []).filter((version) => applied.has(version));
      if (stale.length > 0) {
        await tx.query('delete from public.memory_schema_migrations where version = any($1::text[])', [stale]);
      }
      return { applied: done, current: migrations.at(-1)?.version };
    });
  } catch (error) {
    if (isMemoryError(error) && (error.code === 'MIGRATION_FAILED' || error.code === 'BACKEND_UNAVAILABLE'))
      throw error;
    throw new MemoryError('MIGRATION_FAILED', `applying migrations failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** The newest applied version and the versions still pending, without changing anything. */
export async function migrationStatus(
  transport: SqlTransport,
  migrations: Migration[] = loadMigrations(),
): Promise<{ current: string | undefined; pending: string[] }> {
  const exists = await transport.query<{ present: boolean }>(
    "select to_regclass('public.memory_schema_migrations') is not null as present",
  );
  const applied = exists[0]?.present ? await appliedMigrations(transport) : new Map<string, string>();
  const versions = [...applied.keys()].sort();
  return { current: versions.at(-1), pending: migrations.filter((m) => !applied.has(m.version)).map((m) => m.version) };
}
