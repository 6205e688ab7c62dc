import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory, type MemoryStore, type SaveSettingsInput } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';
import { cli, oneLine } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * Hostile input to the CLI and to saveSettings (issue 8, defects 5 and 8 to 14 and their
 * neighbours). Every case is refused with its exact code, and nothing reaches the database or the
 * journal: the row counts of every memory table are the same before and after each case.
 */

const KEY = Buffer.alloc(32, 3).toString('base64');
const ID = 'target@example.com';

interface CliCase {
  name: string;
  args: string[];
  /** Replaces DATABASE_URL (the database under test otherwise). */
  databaseUrl?: string;
  stdin?: string;
  exit: number;
  /** The whole stderr line. */
  stderr: RegExp;
}

const CLI_CASES: CliCase[] = [
  // Prototype-ish names (defect 9).
  {
    name: '--secret __proto__',
    args: ['settings', 'set', ID, '--secret', '__proto__=abc'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: the name "__proto__" is not allowed; use a letter/,
  },
  {
    name: '--secret constructor',
    args: ['settings', 'set', ID, '--secret', 'constructor=abc'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: the name "constructor" is not allowed/,
  },
  {
    name: '--secret prototype',
    args: ['settings', 'set', ID, '--secret', 'prototype=abc'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: the name "prototype" is not allowed/,
  },
  {
    name: '--remove-secret __proto__',
    args: ['settings', 'set', ID, '--remove-secret', '__proto__'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --remove-secret: the name "__proto__" is not allowed/,
  },
  {
    name: '--config {"__proto__":...}',
    args: ['settings', 'set', ID, '--config', '{"__proto__":{"voice":"x"}}'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --config: config: the name "__proto__" is not allowed$/,
  },
  {
    name: '--config externalAgentIds.constructor',
    args: ['settings', 'set', ID, '--config', '{"externalAgentIds":{"constructor":"x"}}'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --config: config.externalAgentIds: the name "constructor" is not allowed$/,
  },
  // Empty and malformed pairs (defect 10): one line naming the problem, never the value.
  {
    name: '--secret =abc',
    args: ['settings', 'set', ID, '--secret', '=abc'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret expects NAME=VALUE: the name before = is empty$/,
  },
  {
    name: '--secret without =',
    args: ['settings', 'set', ID, '--secret', 'sk-looks-like-a-value'],
    exit: 2,
    stderr:
      /^lk-memory: INVALID_SETTINGS: --secret expects NAME=VALUE \(NAME=- reads the value from standard input\); no = was given$/,
  },
  {
    name: '--secret A= (empty value)',
    args: ['settings', 'set', ID, '--secret', 'A='],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: secrets.A must be non-empty UTF-8 text of at most 8192 bytes$/,
  },
  {
    name: '--secret A=- with empty stdin',
    args: ['settings', 'set', ID, '--secret', 'A=-'],
    stdin: '\n',
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: secrets.A must be non-empty/,
  },
  {
    name: '--secret given twice',
    args: ['settings', 'set', ID, '--secret', 'A=1', '--secret', 'A=2'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret A is given twice; give each secret once$/,
  },
  {
    name: '--secret and --remove-secret of one name',
    args: ['settings', 'set', ID, '--secret', 'A=1', '--remove-secret', 'A'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: A is both set/,
  },
  // Secret names (defect 11): still refused.
  {
    name: '--secret with a hyphen',
    args: ['settings', 'set', ID, '--secret', 'api-key=x'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: secret name "api-key" is invalid/,
  },
  {
    name: '--secret with a dot',
    args: ['settings', 'set', ID, '--remove-secret', 'api.key'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --remove-secret: secret name "api.key" is invalid/,
  },
  {
    name: '--secret with a space',
    args: ['settings', 'set', ID, '--secret', 'api key=x'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: secret name "api key" is invalid/,
  },
  {
    name: '--secret of 65 characters',
    args: ['settings', 'set', ID, '--secret', `A${'b'.repeat(64)}=x`],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: secret name "Ab+" is invalid/,
  },
  {
    name: '--secret starting with _',
    args: ['settings', 'set', ID, '--secret', '_private=x'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: secret name "_private" is invalid/,
  },
  {
    name: '--secret starting with a digit',
    args: ['settings', 'set', ID, '--secret', '1KEY=x'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --secret: secret name "1KEY" is invalid/,
  },
  // --config of the wrong type (defect 11 from the command line).
  {
    name: '--config []',
    args: ['settings', 'set', ID, '--config', '[]'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --config: config must be a plain object of settings .*\(got an array\)$/,
  },
  {
    name: '--config null',
    args: ['settings', 'set', ID, '--config', 'null'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --config: config must be a plain object .*\(got null\)$/,
  },
  {
    name: '--config "text"',
    args: ['settings', 'set', ID, '--config', '"text"'],
    exit: 2,
    stderr: /\(got a string\)$/,
  },
  {
    name: '--config voice: 1',
    args: ['settings', 'set', ID, '--config', '{"voice":1}'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --config: config.voice: /,
  },
  {
    name: '--config not JSON',
    args: ['settings', 'set', ID, '--config', '{not json'],
    exit: 2,
    stderr: /^lk-memory: INVALID_SETTINGS: --config is not valid JSON \(.+\)$/,
  },
  {
    name: '--tenant with a slash',
    args: ['settings', 'set', ID, '--tenant', '../x', '--config', '{}'],
    exit: 2,
    stderr: /^lk-memory: INVALID_TENANT: tenant "..\/x" is invalid/,
  },
  // Identities and keys that were not UTF-8 in argv (defect 13).
  {
    name: 'uuid of U+FFFD',
    args: ['uuid', '\ufffd'],
    exit: 2,
    stderr: /^lk-memory: INVALID_IDENTITY: the identity is not valid UTF-8 on the command line/,
  },
  {
    name: 'store for an identity with U+FFFD',
    args: ['store', 'a\ufffdb', 'FACT', 'k', 'v'],
    exit: 2,
    stderr: /^lk-memory: INVALID_IDENTITY: the identity is not valid UTF-8/,
  },
  {
    name: 'settings set for an identity with U+FFFD',
    args: ['settings', 'set', '\ufffd', '--config', '{}'],
    exit: 2,
    stderr: /^lk-memory: INVALID_IDENTITY: /,
  },
  {
    name: 'store a key with U+FFFD',
    args: ['store', ID, 'FACT', 'k\ufffd', 'v'],
    exit: 2,
    stderr: /^lk-memory: INVALID_KEY: the key is not valid UTF-8 on the command line/,
  },
  {
    name: 'store a key with ESC',
    args: ['store', ID, 'FACT', 'k\x1b[2J', 'v'],
    exit: 2,
    stderr: /^lk-memory: INVALID_KEY: key "k\\u001b\[2J" contains a control character$/,
  },
  {
    name: 'store a key with a C1 CSI (escaped in the message)',
    args: ['store', ID, 'FACT', 'k\x9b2J', 'v'],
    exit: 2,
    stderr: /^lk-memory: INVALID_KEY: key "k\\x9b2J" contains a control character$/,
  },
  // Unparseable connection strings (defect 14): INVALID_CONFIG naming the variable or option.
  {
    name: 'DATABASE_URL with a space and a bad port',
    args: ['list', ID],
    databaseUrl: 'postgres://user:pa ss@host:notaport/db',
    exit: 2,
    stderr: /^lk-memory: INVALID_CONFIG: DATABASE_URL is not a valid connection string: it contains a space/,
  },
  {
    name: 'DATABASE_URL with an open IPv6 bracket',
    args: ['migrate'],
    databaseUrl: 'postgres://[::1',
    exit: 2,
    stderr:
      /^lk-memory: INVALID_CONFIG: DATABASE_URL is not a valid connection string: the IPv6 address is missing its closing \]/,
  },
  {
    name: 'DATABASE_URL with a port that is not a number',
    args: ['list', ID],
    databaseUrl: 'postgres://u@h:notaport/db',
    exit: 2,
    stderr:
      /^lk-memory: INVALID_CONFIG: DATABASE_URL is not a valid connection string: the port must be a number from 1 to 65535$/,
  },
  {
    name: 'DATABASE_URL with port 0',
    args: ['list', ID],
    databaseUrl: 'postgres://u@h:0/db',
    exit: 2,
    stderr: /the port must be a number from 1 to 65535$/,
  },
  {
    name: 'DATABASE_URL with a bare %',
    args: ['list', ID],
    databaseUrl: 'postgres://u:100%@h/db',
    exit: 2,
    stderr: /^lk-memory: INVALID_CONFIG: DATABASE_URL is not a valid connection string: the password has a %/,
  },
  {
    name: 'DATABASE_URL of another scheme',
    args: ['list', ID],
    databaseUrl: 'mysql://u@h/db',
    exit: 2,
    stderr: /^lk-memory: INVALID_CONFIG: DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ connection string$/,
  },
  {
    name: '--database-url with port 99999',
    args: ['--database-url', 'postgres://u:pw-hidden@h:99999/db', 'migrate'],
    exit: 2,
    stderr:
      /^lk-memory: INVALID_CONFIG: --database-url is not a valid connection string: the port must be a number from 1 to 65535$/,
  },
  // Usage: one line each.
  {
    name: 'no command',
    args: [],
    exit: 2,
    stderr: /^lk-memory: lk-memory needs a command: run `lk-memory --help` to list them$/,
  },
  {
    name: 'settings without set or get',
    args: ['settings'],
    exit: 2,
    stderr: /^lk-memory: lk-memory settings needs a command/,
  },
  {
    name: 'misspelt command',
    args: ['settings', 'sett', ID],
    exit: 2,
    stderr: /^error: unknown command 'sett' \(Did you mean set\?\)$/,
  },
  { name: 'unknown option', args: ['inspect', ID, '--bogus'], exit: 2, stderr: /^error: unknown option '--bogus'$/ },
  {
    name: 'list --limit 0',
    args: ['list', ID, '--limit', '0'],
    exit: 2,
    stderr: /^error: option '--limit <n>' argument '0' is invalid\. expected a whole number from 1 to 10000$/,
  },
];

interface LibraryCase {
  name: string;
  input: unknown;
  code: string;
  message: RegExp;
}

class Settings {
  voice = 'alloy';
}

const LIBRARY_CASES: LibraryCase[] = [
  {
    name: "removeSecrets: 'AB' (a string, not an array)",
    input: { removeSecrets: 'AB' },
    code: 'INVALID_SETTINGS',
    message: /^removeSecrets must be an array of secret names \(got a string\)$/,
  },
  {
    name: 'removeSecrets: [1]',
    input: { removeSecrets: [1] },
    code: 'INVALID_SETTINGS',
    message: /^removeSecrets: a secret name must be a string \(got a number\)$/,
  },
  {
    name: 'removeSecrets: [null]',
    input: { removeSecrets: [null] },
    code: 'INVALID_SETTINGS',
    message: /\(got null\)$/,
  },
  {
    name: "removeSecrets: ['__proto__']",
    input: { removeSecrets: ['__proto__'] },
    code: 'INVALID_SETTINGS',
    message: /^removeSecrets: secret name "__proto__" is invalid/,
  },
  {
    name: 'removeSecrets: a Set',
    input: { removeSecrets: new Set(['A']) },
    code: 'INVALID_SETTINGS',
    message: /\(got a Set\)$/,
  },
  {
    name: 'secrets: new Map() (would save nothing)',
    input: { secrets: new Map() },
    code: 'INVALID_SETTINGS',
    message: /^secrets must be a plain object of NAME: value strings \(got a Map\)$/,
  },
  {
    name: 'secrets: a Map with entries',
    input: { secrets: new Map([['A', 'x']]) },
    code: 'INVALID_SETTINGS',
    message: /\(got a Map\)$/,
  },
  { name: 'secrets: []', input: { secrets: [] }, code: 'INVALID_SETTINGS', message: /\(got an array\)$/ },
  {
    name: 'secrets: a number value',
    input: { secrets: { A: 1 } },
    code: 'INVALID_SETTINGS',
    message: /^secrets.A must be a string \(got a number\)$/,
  },
  {
    name: 'secrets: a null value',
    input: { secrets: { A: null } },
    code: 'INVALID_SETTINGS',
    message: /^secrets.A must be a string \(got null\)$/,
  },
  {
    name: 'secrets: a nested object',
    input: { secrets: { A: { nested: 'x' } } },
    code: 'INVALID_SETTINGS',
    message: /^secrets.A must be a string \(got an object\)$/,
  },
  {
    name: 'secrets: an empty value',
    input: { secrets: { A: '' } },
    code: 'INVALID_SETTINGS',
    message: /^secrets.A must be non-empty/,
  },
  {
    name: 'secrets: own __proto__ (JSON.parse)',
    input: { secrets: JSON.parse('{"__proto__":"x"}') },
    code: 'INVALID_SETTINGS',
    message: /^secrets: the name "__proto__" is not allowed$/,
  },
  {
    name: 'secrets: a hyphenated name',
    input: { secrets: { 'api-key': 'x' } },
    code: 'INVALID_SETTINGS',
    message: /^secrets: secret name "api-key" is invalid/,
  },
  {
    name: 'config: a Map',
    input: { config: new Map([['voice', 'alloy']]) },
    code: 'INVALID_SETTINGS',
    message: /^config must be a plain object .*\(got a Map\)$/,
  },
  { name: 'config: a Set', input: { config: new Set() }, code: 'INVALID_SETTINGS', message: /\(got a Set\)$/ },
  { name: 'config: a Date', input: { config: new Date() }, code: 'INVALID_SETTINGS', message: /\(got a Date\)$/ },
  {
    name: 'config: a class instance',
    input: { config: new Settings() },
    code: 'INVALID_SETTINGS',
    message: /\(got a Settings\)$/,
  },
  {
    name: 'config: an object with another prototype',
    input: { config: Object.create({ voice: 'alloy' }) },
    code: 'INVALID_SETTINGS',
    message: /^config must be a plain object/,
  },
  {
    name: 'config: externalAgentIds a Map',
    input: { config: { externalAgentIds: new Map() } },
    code: 'INVALID_SETTINGS',
    message: /^config.externalAgentIds must be a plain object .*\(got a Map\)$/,
  },
  {
    name: 'tenant: a number',
    input: { tenant: 5, config: {} },
    code: 'INVALID_TENANT',
    message: /^tenant 5 is invalid/,
  },
];

async function counts(url: string): Promise<Record<string, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const out: Record<string, number> = {};
    for (const table of ['memory_users', 'memories', 'memory_settings', 'memory_audit_log']) {
      out[table] = (await client.query(`select count(*)::int as n from public.${table}`)).rows[0].n;
    }
    return out;
  } finally {
    await client.end();
  }
}

describe('hostile input to lk-memory and saveSettings', () => {
  let db: TestDatabase;
  let dataDir: string;
  let memory: MemoryStore;
  beforeAll(async () => {
    db = await createTestDatabase('hostile');
    dataDir = tempDataDir('hostile');
    memory = await openMemory({
      env: { MEMORY_ENCRYPTION_KEY: KEY },
      databaseUrl: db.url,
      dataDir,
      backgroundSync: false,
    });
    await memory.provision(ID);
  });
  afterAll(async () => {
    await memory?.close();
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('has at least 60 cases', () => {
    expect(CLI_CASES.length + LIBRARY_CASES.length).toBeGreaterThanOrEqual(60);
  });

  for (const c of CLI_CASES) {
    it(`lk-memory: ${c.name}`, async () => {
      const before = await counts(db.url);
      const env = { DATABASE_URL: c.databaseUrl ?? db.url, MEMORY_DATA_DIR: dataDir, MEMORY_ENCRYPTION_KEY: KEY };
      const result = await cli(c.args, env, c.stdin);
      expect(result.code).toBe(c.exit);
      expect(oneLine(result)).toMatch(c.stderr);
      expect(result.stdout).toBe('');
      expect(result.stderr).not.toContain('pw-hidden');
      expect(await counts(db.url)).toEqual(before);
      expect(await memory.journal!.pending()).toEqual([]);
    });
  }

  for (const c of LIBRARY_CASES) {
    it(`saveSettings: ${c.name}`, async () => {
      const before = await counts(db.url);
      const error = await memory
        .forIdentity(ID)
        .saveSettings(c.input as SaveSettingsInput)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toMatchObject({ name: 'MemoryError', code: c.code });
      expect((error as Error).message).toMatch(c.message);
      expect(await counts(db.url)).toEqual(before);
      expect(await memory.journal!.pending()).toEqual([]);
    });
  }

  it('valid secret names in either case are saved, and inspect --json shows them', async () => {
    const names = ['retell_api_key', 'call_agent_id', 'sms_agent_id', 'API_KEY', 'a', `A${'b'.repeat(63)}`];
    const saved = await memory
      .forIdentity(ID)
      .saveSettings({ secrets: Object.fromEntries(names.map((n) => [n, `value-of-${n}`])) });
    expect(saved.secretNames).toEqual([...names].sort());
    const inspect = JSON.parse(
      (await cli(['inspect', ID, '--json'], { DATABASE_URL: db.url, MEMORY_DATA_DIR: dataDir })).stdout,
    );
    expect(Object.keys(inspect.settings[0].secrets).sort()).toEqual([...names].sort());
  });
});
