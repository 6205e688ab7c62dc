import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { tempDataDir } from '../support/backends.js';
import { cli, oneLine } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { openMemory } from '../../memory/index.js';

const KEY = Buffer.alloc(32, 9).toString('base64');

/** Issue 8, defects 8, 9, 10, 12, 13: what the CLI prints, refuses, and does during an outage. */
describe('lk-memory output and input safety', () => {
  let db: TestDatabase;
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    db = await createTestDatabase('clisafe');
    dataDir = tempDataDir('clisafe');
    env = { DATABASE_URL: db.url, MEMORY_DATA_DIR: dataDir, MEMORY_ENCRYPTION_KEY: KEY };
  });
  afterAll(async () => {
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('list and inspect escape terminal controls and bidi characters; --json stays exact', async () => {
    const hostile = 'a\x1b[31mred\x07bell\x01soh\x7fdel\x9bcsi\u202eevil\u2066iso\u200fmark\u2028ls\u2029ps\r\tend\\';
    expect((await cli(['store', 'eve@example.com', 'FACT', 'k\u202etxt.exe', hostile], env)).code).toBe(0);
    const list = await cli(['list', 'eve@example.com'], env);
    const inspect = await cli(['inspect', 'eve@example.com'], env);
    for (const out of [list.stdout, inspect.stdout]) {
      expect(out).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u2028\u2029]/);
      expect(out).toContain(
        'a\\x1b[31mred\\x07bell\\x01soh\\x7fdel\\x9bcsi\\u202eevil\\u2066iso\\u200fmark\\u2028ls\\u2029ps\\r\\tend\\\\',
      );
      expect(out).toContain('k\\u202etxt.exe');
    }
    expect(list.stdout.split('\n')).toHaveLength(2);
    const json = JSON.parse((await cli(['list', 'eve@example.com', '--json'], env)).stdout);
    expect(json[0]).toMatchObject({ key: 'k\u202etxt.exe', value: hostile });
    const inspectJson = JSON.parse((await cli(['inspect', 'eve@example.com', '--json'], env)).stdout);
    expect(inspectJson.memories[0].value).toBe(hostile);
  });

  it('settings get escapes bidi characters in the configuration', async () => {
    expect(
      (
        await cli(
          [
            'settings',
            'set',
            'eve@example.com',
            '--config',
            JSON.stringify({ instructions: 'say \u202eyes\u2069 \x1b[2J' }),
          ],
          env,
        )
      ).code,
    ).toBe(0);
    const get = await cli(['settings', 'get', 'eve@example.com'], env);
    expect(get.stdout).toContain('say \\u202eyes\\u2069 \\u001b[2J');
    expect(get.stdout).not.toMatch(/[\u202e\u2069\x1b]/);
  });

  it('--secret __proto__=abc and =abc exit 2 with one line naming the problem, and store nothing', async () => {
    const proto = await cli(['settings', 'set', 'mallory@example.com', '--secret', '__proto__=abc'], env);
    expect(proto.code).toBe(2);
    expect(oneLine(proto)).toMatch(/^lk-memory: INVALID_SETTINGS: --secret: the name "__proto__" is not allowed/);
    const empty = await cli(['settings', 'set', 'mallory@example.com', '--secret', '=abc'], env);
    expect(empty.code).toBe(2);
    expect(oneLine(empty)).toBe('lk-memory: INVALID_SETTINGS: --secret expects NAME=VALUE: the name before = is empty');
    expect(empty.stderr).not.toContain('abc');
    const rows = await adminQueryOn(
      db.name,
      "select count(*)::int as n from public.memory_users where identity = 'mallory@example.com'",
    );
    expect(rows).toBe(0);
  });

  it('secret names in either case are accepted (retell_api_key, call_agent_id)', async () => {
    const set = await cli(
      [
        'settings',
        'set',
        'eve@example.com',
        '--secret',
        'retell_api_key=k1',
        '--secret',
        'call_agent_id=a1',
        '--secret',
        'API_KEY=k2',
      ],
      env,
    );
    expect(set).toMatchObject({ code: 0, stderr: '' });
    const view = JSON.parse((await cli(['settings', 'get', 'eve@example.com', '--json'], env)).stdout);
    expect(Object.keys(view.secrets).sort()).toEqual(['API_KEY', 'call_agent_id', 'retell_api_key']);
  });

  it('identities that are not valid UTF-8 on the command line are refused (exit 2), not merged into U+FFFD', async () => {
    for (const args of [
      ['uuid', '\ufffd'],
      ['store', 'x\ufffd', 'FACT', 'k', 'v'],
      ['list', '\ufffd'],
      ['settings', 'set', '\ufffd', '--config', '{}'],
    ]) {
      const result = await cli(args, env);
      expect(result.code, args.join(' ')).toBe(2);
      expect(oneLine(result)).toMatch(
        /^lk-memory: INVALID_IDENTITY: the identity is not valid UTF-8 on the command line/,
      );
    }
    expect(
      await adminQueryOn(db.name, "select count(*)::int as n from public.memory_users where identity like '%\ufffd%'"),
    ).toBe(0);
  });

  it('settings set during a database outage saves to the journal (exit 0), and the replay provisions and saves', async () => {
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close();
    const { proxy, url } = await PgWireProxy.inFrontOf(db.url);
    const outageDir = tempDataDir('clisafe-outage');
    try {
      const down = { DATABASE_URL: url, MEMORY_DATA_DIR: outageDir, MEMORY_ENCRYPTION_KEY: KEY };
      proxy.stopDatabase();
      const set = await cli(
        ['settings', 'set', 'offline@example.com', '--config', '{"voice":"alloy"}', '--secret', 'API_KEY=sk-offline'],
        down,
      );
      expect(set.stderr).toBe('');
      expect(set.code).toBe(0);
      expect(set.stdout).toContain('saved to the local journal (database unreachable); it will be replayed');
      expect(set.stdout).not.toContain('sk-offline');
      const json = await cli(
        ['settings', 'set', 'offline@example.com', '--config', '{"voice":"verse"}', '--json'],
        down,
      );
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout).savedTo).toBe('journal');
      expect(
        await adminQueryOn(
          db.name,
          "select count(*)::int as n from public.memory_users where identity = 'offline@example.com'",
        ),
      ).toBe(0);
      proxy.startDatabase();
      const sync = await cli(['sync', '--json'], down);
      expect(sync.code).toBe(0);
      expect(JSON.parse(sync.stdout)).toMatchObject({ applied: 2, remaining: 0 });
      const view = JSON.parse((await cli(['settings', 'get', 'offline@example.com', '--json'], down)).stdout);
      expect(view).toMatchObject({ config: { voice: 'verse' } });
      expect(Object.keys(view.secrets)).toEqual(['API_KEY']);
    } finally {
      await proxy.stop();
      fs.rmSync(outageDir, { recursive: true, force: true });
    }
  });
});

async function adminQueryOn(database: string, sql: string): Promise<number> {
  const pg = await import('pg');
  const url = new URL((await import('../support/postgres.js')).ADMIN_DATABASE_URL);
  url.pathname = `/${database}`;
  const client = new pg.default.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return (await client.query(sql)).rows[0].n as number;
  } finally {
    await client.end();
  }
}
