import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';
import { cli, oneLine, withPasswords } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { runCliProcess, cleanEnv } from '../support/processes.js';
import { releaseLiveKitClients, startStack } from '../support/stack.js';

/**
 * Issue 8, defect 5: a password in DATABASE_URL (userinfo or ?password=) must never be printed,
 * by any command, error path, the worker's log or its /health JSON. The database runs with trust
 * authentication, so the passwords are accepted and ignored: every command really works.
 */
const USERINFO_SECRET = 'userinfo-Secret-8b1f';
const QUERY_SECRET = 'query-Secret-41c2';

function expectNoSecret(where: string, text: string): void {
  expect(text, where).not.toContain(USERINFO_SECRET);
  expect(text, where).not.toContain(QUERY_SECRET);
}

describe('no credential of DATABASE_URL is ever printed', () => {
  let db: TestDatabase;
  let url: string;
  let dataDir: string;
  beforeAll(async () => {
    db = await createTestDatabase('redact');
    url = withPasswords(db.url, USERINFO_SECRET, QUERY_SECRET);
    dataDir = tempDataDir('redact');
  });
  afterAll(async () => {
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('migrate, store, inspect (text and JSON), settings, sync and doctor over a working URL', async () => {
    const env = {
      DATABASE_URL: url,
      MEMORY_DATA_DIR: dataDir,
      MEMORY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
      LIVEKIT_URL: 'ws://127.0.0.1:1',
    };
    const runs = {
      migrate: await cli(['migrate'], env),
      store: await cli(['store', 'alice@example.com', 'FACT', 'city', 'Porto'], env),
      inspect: await cli(['inspect', 'alice@example.com'], env),
      inspectJson: await cli(['inspect', 'alice@example.com', '--json'], env),
      settings: await cli(['settings', 'set', 'alice@example.com', '--config', '{"voice":"alloy"}'], env),
      sync: await cli(['sync', '--json'], env),
      doctor: await cli(['doctor'], env),
      doctorJson: await cli(['doctor', '--json'], env),
      viaOption: await cli(['--database-url', url, 'migrate'], { MEMORY_DATA_DIR: dataDir }),
    };
    expect(runs.migrate).toMatchObject({ code: 0, stderr: '' });
    expect(runs.migrate.stdout).toContain('password=***');
    expect(runs.migrate.stdout).toContain(':***@');
    expect(runs.inspect.code).toBe(0);
    expect(JSON.parse(runs.inspectJson.stdout).locations.database.backend).toContain('password=***');
    expect(runs.doctor.stdout).toMatch(/^ok\s+database\s+postgres:\/\/postgres:\*\*\*@/m);
    for (const [name, run] of Object.entries(runs)) {
      expectNoSecret(`${name} stdout`, run.stdout);
      expectNoSecret(`${name} stderr`, run.stderr);
    }
  });

  it('error paths: an unreachable ?password= URL, in process and in a real lk-memory process, and doctor on it', async () => {
    const dead = withPasswords('postgres://postgres@127.0.0.1:1/none', USERINFO_SECRET, QUERY_SECRET);
    const env = { DATABASE_URL: dead, MEMORY_DATA_DIR: dataDir };
    const list = await cli(['list', 'alice@example.com'], env);
    expect(list.code).toBe(3);
    expect(oneLine(list)).toMatch(
      /^lk-memory: BACKEND_UNAVAILABLE: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/none\?password=\*\*\*/,
    );
    const migrate = await cli(['migrate', '--database-url', dead], { MEMORY_DATA_DIR: dataDir });
    expect(migrate.code).toBe(3);
    const doctor = await cli(['doctor', '--json'], { ...env, LIVEKIT_URL: 'ws://127.0.0.1:1' });
    expect(JSON.parse(doctor.stdout)[0]).toMatchObject({ name: 'database', status: 'FAIL' });
    const processRun = await runCliProcess(['list', 'alice@example.com'], cleanEnv(env));
    expect(processRun.code).toBe(3);
    for (const [name, run] of Object.entries({ list, migrate, doctor, processRun })) {
      expectNoSecret(`${name} stdout`, run.stdout);
      expectNoSecret(`${name} stderr`, run.stderr);
    }
  });

  it('an unparseable URL with a password is INVALID_CONFIG (exit 2) and the password is not echoed', async () => {
    for (const bad of [`postgres://user:${QUERY_SECRET} x@host:notaport/db`, `postgres://user:${QUERY_SECRET}@[::1`]) {
      for (const run of [
        await cli(['list', 'a'], { DATABASE_URL: bad }),
        await cli(['--database-url', bad, 'migrate'], {}),
        await cli(['doctor', '--json'], { DATABASE_URL: bad, LIVEKIT_URL: 'ws://127.0.0.1:1' }),
      ]) {
        expectNoSecret(bad, run.stdout + run.stderr);
      }
      const result = await cli(['list', 'a'], { DATABASE_URL: bad });
      expect(result.code).toBe(2);
      expect(oneLine(result)).toMatch(/^lk-memory: INVALID_CONFIG: DATABASE_URL is not a valid connection string/);
    }
  });

  it("the worker's start log and /health", async () => {
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close();
    const stack = await startStack({ env: { DATABASE_URL: url } });
    try {
      expect(stack.healthUrl).toBeDefined();
      const health = await (await fetch(stack.healthUrl!)).text();
      expect(JSON.parse(health).memory).toMatchObject({ state: 'up' });
      expect(JSON.parse(health).memory.backend.location).toContain('password=***');
      expectNoSecret('/health', health);
      expect(stack.workerLog.join('\n')).toContain('memory: postgres://postgres:***@');
      expectNoSecret('worker log', stack.workerLog.join('\n'));
    } finally {
      await stack.stop();
      await releaseLiveKitClients();
    }
  });
});
