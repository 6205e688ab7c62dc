import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL the tests use: TEST_DATABASE_URL, else DATABASE_URL (.ci/run exports it), else the
 * local server of the project's machines. Each suite gets a database of its own, created here and
 * dropped afterwards, so suites run in parallel without seeing each other's rows.
 */
export const ADMIN_DATABASE_URL =
  process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const HOW_TO_FIX =
  'The tests need a real PostgreSQL (15 or newer). Start it (on Debian: `pg_ctlcluster 15 main start`; ' +
  'elsewhere: `brew services start postgresql` or `docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres`) ' +
  'and point DATABASE_URL at a role that may CREATE DATABASE.';

export async function adminQuery(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`PostgreSQL is not reachable at ${ADMIN_DATABASE_URL}: ${(error as Error).message}. ${HOW_TO_FIX}`);
  }
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(label = 'suite'): Promise<TestDatabase> {
  const name = `lkm_${label}_${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      await adminQuery(`drop database if exists ${name} with (force)`);
    },
  };
}
