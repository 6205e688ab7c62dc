import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId, openMemory } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { runCli } from '../../scripts/cli/program.js';
import { tempDataDir } from '../support/backends.js';
import custom from '../fixtures/identity-uuid5-custom-namespace.json' with { type: 'json' };
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

async function cli(args: string[], env: NodeJS.ProcessEnv) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env });
  return { code, stdout, stderr };
}

const COMMANDS = [
  'uuid',
  'store',
  'retrieve',
  'list',
  'search',
  'import',
  'forget',
  'migrate',
  'settings',
  'inspect',
  'link',
  'sync',
  'rotate-key',
  'doctor',
  'export',
  'erase',
];
const SUBCOMMANDS = ['settings set', 'settings get'];

describe('lk-memory', () => {
  let dataDir: string;
  let db: TestDatabase;
  beforeAll(async () => {
    dataDir = tempDataDir('cli');
    db = await createTestDatabase('cli');
  });
  afterAll(async () => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  it('has --help on the program and on every command', async () => {
    const top = await cli(['--help'], {});
    expect(top.code).toBe(0);
    for (const command of COMMANDS) expect(top.stdout).toContain(command);
    for (const command of [...COMMANDS, ...SUBCOMMANDS]) {
      const help = await cli([...command.split(' '), '--help'], {});
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).toContain(`Usage: lk-memory ${command}`);
      expect(help.stderr, command).toBe('');
    }
    // A command group without its command is a usage error: one line, not the help on stderr.
    for (const group of [[], ['settings']]) {
      const result = await cli(group, {});
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(
        /^lk-memory: lk-memory( settings)? needs a command: run `lk-memory( settings)? --help` to list them\n$/,
      );
    }
  });

  it('uuid prints the Python-compatible user id, in the default or a given namespace', async () => {
    expect(await cli(['uuid', 'alice@example.com'], {})).toEqual({
      code: 0,
      stdout: 'edabafbb-61ad-51d6-9fd8-e976c892a731\n',
      stderr: '',
    });
    const vector = custom.vectors[0]!;
    expect((await cli(['uuid', vector.identity, '--namespace', custom.namespace], {})).stdout).toBe(
      `${vector.user_id}\n`,
    );
    expect((await cli(['uuid', vector.identity], { MEMORY_UUID_NAMESPACE: custom.namespace })).stdout).toBe(
      `${vector.user_id}\n`,
    );
  });

  for (const backend of ['embedded', 'postgres'] as const) {
    it(`imports a file all or none, and searches, on ${backend}`, async () => {
      const env = backend === 'embedded' ? { MEMORY_DATA_DIR: dataDir } : { DATABASE_URL: db.url };
      const file = (name: string, content: unknown) => {
        const where = `${dataDir}-${backend}-${name}.json`;
        fs.writeFileSync(where, typeof content === 'string' ? content : JSON.stringify(content));
        return where;
      };
      const good = file('good', [
        { category: 'PERSONAL', key: 'dentist_name', value: 'Dr. Müller' },
        { category: 'PREFERENCE', key: 'favorite_color', value: 'teal\u001b[31m' },
        { category: 'FACT', key: 'home_city', value: 'Lisbon' },
      ]);
      const imported = await cli(['import', 'imp@example.com', good], env);
      expect(imported).toMatchObject({ code: 0, stderr: '' });
      expect(imported.stdout).toMatch(/^imported 3 memories for imp@example.com \(/);

      // One bad entry anywhere: exit 2, nothing written.
      const bad = [
        file('bad-category', [
          { category: 'FACT', key: 'pet', value: 'cat' },
          { category: 'fact', key: 'x', value: 'y' },
        ]),
        file('bad-key', [
          { category: 'FACT', key: 'pet', value: 'cat' },
          { category: 'FACT', key: 'line\nbreak', value: 'y' },
        ]),
        file('too-big', [
          { category: 'FACT', key: 'pet', value: 'cat' },
          { category: 'FACT', key: 'big', value: 'x'.repeat(20_000) },
        ]),
        file('duplicate', [
          { category: 'FACT', key: 'pet', value: 'cat' },
          { category: 'FACT', key: 'pet', value: 'dog' },
        ]),
        file('extra-field', [{ category: 'FACT', key: 'pet', value: 'cat', user_id: 'someone-else' }]),
        file('not-array', { category: 'FACT', key: 'pet', value: 'cat' }),
        file('not-json', '[{"category": "FACT",'),
      ];
      for (const path of bad) {
        const result = await cli(['import', 'imp@example.com', path], env);
        expect(result.code, path).toBe(2);
        expect(result.stdout, path).toBe('');
        expect(result.stderr.split('\n').filter(Boolean), path).toHaveLength(1);
      }
      expect((await cli(['retrieve', 'imp@example.com', 'FACT', 'pet'], env)).code).toBe(1);
      expect((await cli(['import', 'imp@example.com', `${dataDir}-missing.json`], env)).code).toBe(2);

      const found = await cli(['search', 'imp@example.com', 'dentst'], env);
      expect(found.code).toBe(0);
      expect(found.stdout.split('\n')[0]).toMatch(/^PERSONAL\tdentist_name\tDr\. Müller\t\S+\t0\.\d+$/);
      const json = await cli(['search', 'imp@example.com', 'favourite colour', '--json', '--limit', '1'], env);
      expect(JSON.parse(json.stdout)).toEqual([
        expect.objectContaining({
          category: 'PREFERENCE',
          key: 'favorite_color',
          value: 'teal\u001b[31m',
          score: expect.any(Number),
        }),
      ]);
      // Human output shows the stored escape sequence escaped.
      expect((await cli(['search', 'imp@example.com', 'teal'], env)).stdout).toContain('teal\\x1b[31m');
      expect((await cli(['search', 'imp@example.com', 'lisbon', '--category', 'PERSONAL'], env)).stdout).toBe('');
      expect((await cli(['search', 'other@example.com', 'lisbon'], env)).stdout).toBe('');
      for (const args of [
        ['search', 'imp@example.com', ''],
        ['search', 'imp@example.com', 'x', '--limit', '0'],
        ['search', 'imp@example.com', 'x', '--limit', '101'],
        ['search', 'imp@example.com', 'x', '--category', 'lower'],
        ['search', 'imp@example.com', 'y'.repeat(10_000)],
      ]) {
        expect((await cli(args, env)).code, args.join(' ').slice(0, 60)).toBe(2);
      }
    });

    it(`stores, retrieves, lists and forgets on ${backend}`, async () => {
      const env = backend === 'embedded' ? { MEMORY_DATA_DIR: dataDir } : { DATABASE_URL: db.url };
      expect(await cli(['store', 'alice@example.com', 'FACT', 'test1', "Alice's memory"], env)).toMatchObject({
        code: 0,
        stderr: '',
      });
      expect(
        await cli(['store', 'alice@example.com', 'PREFERENCE', 'odd key', 'tab\there\nnewline'], env),
      ).toMatchObject({ code: 0 });
      expect(await cli(['store', 'bob@example.com', 'FACT', 'test2', "Bob's memory"], env)).toMatchObject({ code: 0 });

      expect(await cli(['retrieve', 'alice@example.com', 'FACT', 'test1'], env)).toEqual({
        code: 0,
        stdout: "Alice's memory\n",
        stderr: '',
      });
      expect(await cli(['retrieve', 'alice@example.com', 'FACT', 'test2'], env)).toEqual({
        code: 1,
        stdout: '',
        stderr: '',
      });
      expect(await cli(['retrieve', 'bob@example.com', 'FACT', 'test1'], env)).toEqual({
        code: 1,
        stdout: '',
        stderr: '',
      });

      const text = await cli(['list', 'alice@example.com'], env);
      expect(text.code).toBe(0);
      const lines = text.stdout.trimEnd().split('\n');
      expect(lines.map((l) => l.split('\t').slice(0, 3))).toEqual([
        ['PREFERENCE', 'odd key', 'tab\\there\\nnewline'],
        ['FACT', 'test1', "Alice's memory"],
      ]);
      const json = JSON.parse((await cli(['list', 'alice@example.com', '--category', 'FACT', '--json'], env)).stdout);
      expect(json).toMatchObject([{ category: 'FACT', key: 'test1', value: "Alice's memory" }]);
      expect(JSON.parse((await cli(['list', 'nobody@example.com', '--json'], env)).stdout)).toEqual([]);

      expect((await cli(['forget', 'alice@example.com', 'FACT', 'test1'], env)).stdout).toContain('forgot FACT/test1');
      expect((await cli(['retrieve', 'alice@example.com', 'FACT', 'test1'], env)).code).toBe(1);
      expect((await cli(['retrieve', 'bob@example.com', 'FACT', 'test2'], env)).stdout).toBe("Bob's memory\n");
    });

    it(`rejects bad input on ${backend} with exit 2, one line on stderr, and writes nothing`, async () => {
      const env = backend === 'embedded' ? { MEMORY_DATA_DIR: dataDir } : { DATABASE_URL: db.url };
      const identity = `never-${backend}@example.com`;
      const bad = [
        ['store', identity, 'fact', 'k', 'v'],
        ['store', identity, 'FACT', '', 'v'],
        ['store', identity, 'FACT', 'k', 'x'.repeat(16 * 1024 + 1)],
        ['store', '', 'FACT', 'k', 'v'],
        ['retrieve', identity, 'FACT'],
        ['list', identity, '--limit', 'many'],
        ['uuid', identity, '--namespace', 'nope'],
        ['frobnicate'],
        ['forgte', identity],
        ['list', identity, '--bogus'],
        ['uuid', identity, 'extra'],
        ['settings', 'sett', identity],
        ['settings'],
        [],
      ];
      // Bad input is exit 2 even when the backend is down: it is checked before anything opens.
      for (const environment of [env, { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }]) {
        for (const args of bad) {
          const result = await cli(args, environment);
          expect(result.code, args.join(' ')).toBe(2);
          expect(result.stdout, args.join(' ')).toBe('');
          expect(result.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
        }
      }
      // Nothing was written: the identity was never provisioned.
      const memory = await openMemory({ env, serve: false });
      try {
        const rows = await transportOf(memory).query(
          'select 1 from public.memory_users where id = $1 or identity = $2',
          [identityToUserId(identity), identity],
        );
        expect(rows).toEqual([]);
      } finally {
        await memory.close();
      }
    });

    it(`migrate on ${backend} reports the schema version and is idempotent`, async () => {
      const env = backend === 'embedded' ? { MEMORY_DATA_DIR: dataDir } : { DATABASE_URL: db.url };
      const result = await cli(['migrate'], env);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/nothing to apply; schema is at \d{14}/);
    });
  }

  it('exits 3 with one line when the backend cannot be reached', async () => {
    const result = await cli(['list', 'alice@example.com'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/^lk-memory: BACKEND_UNAVAILABLE: .*ECONNREFUSED/);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('exits 2 naming the variable when the configuration is invalid', async () => {
    const result = await cli(['list', 'alice@example.com'], { DATABASE_URL: 'mysql://nope' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('DATABASE_URL');
  });
});
