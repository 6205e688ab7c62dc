import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_FORMAT, identityToUserId, openMemory, parseExportDocument } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { cli, oneLine } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { tableContents } from '../support/table-contents.js';

const KEY = randomBytes(32).toString('base64');

/** Data lines of a real `pg_dump --data-only` (COPY rows), sorted: what a database dump shows. */
function pgDump(url: string): string[] {
  const out = execFileSync('pg_dump', ['--data-only', '--no-owner', '--schema=public', url], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  return out
    .split('\n')
    .filter((l) => l.includes('\t') && !l.startsWith('--'))
    .sort();
}

describe('lk-memory export, erase and import', () => {
  let db: TestDatabase;
  const dirs: string[] = [];
  beforeAll(async () => {
    db = await createTestDatabase('clierase');
  });
  afterAll(async () => {
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });
  const folder = (label: string) => {
    const dir = tempDataDir(label);
    dirs.push(dir);
    return dir;
  };

  it('has --help for export, erase and import', async () => {
    for (const command of ['export', 'erase', 'import']) {
      const help = await cli([command, '--help'], {});
      expect(help, command).toMatchObject({ code: 0, stderr: '' });
      expect(help.stdout).toContain(`Usage: lk-memory ${command}`);
    }
    expect((await cli(['erase', '--help'], {})).stdout).toContain('--yes');
    expect((await cli(['export', '--help'], {})).stdout).toContain('--out <file>');
  });

  for (const backend of ['postgres', 'embedded'] as const) {
    it(`export, erase, import on ${backend}: the user is gone from inspect, export and a dump, comes back from the file, and bob never changes`, async () => {
      const dataDir = folder(`clierase-${backend}`);
      const env =
        backend === 'postgres'
          ? { DATABASE_URL: db.url, MEMORY_DATA_DIR: dataDir, MEMORY_ENCRYPTION_KEY: KEY }
          : { MEMORY_DATA_DIR: dataDir, MEMORY_ENCRYPTION_KEY: KEY };
      const alice = `alice-${backend}@example.com`;
      const bob = `bob-${backend}@example.com`;
      const aliceId = identityToUserId(alice);
      for (const [who, city] of [
        [alice, 'Lisbon-of-alice'],
        [bob, 'Porto-of-bob'],
      ] as const) {
        expect((await cli(['store', who, 'FACT', 'home_city', city], env)).code).toBe(0);
        expect((await cli(['store', who, 'PREFERENCE', 'drink', `tea-${who}`], env)).code).toBe(0);
        expect(
          (await cli(['settings', 'set', who, '--config', '{"voice":"alloy"}', '--secret', `API_KEY=sk-${who}`], env))
            .code,
        ).toBe(0);
      }
      // What the database holds, as a dump (PostgreSQL: real pg_dump; PGlite: every row of every table).
      const dump = async (): Promise<string[]> => {
        if (backend === 'postgres') return pgDump(db.url);
        const memory = await openMemory({ env: {}, dataDir, embeddedRole: 'owner', serve: false, journal: false });
        try {
          const all = await tableContents({ sql: (t, p) => transportOf(memory).query(t, p) });
          return Object.entries(all)
            .flatMap(([table, rows]) => rows.map((r) => `${table}\t${r}`))
            .sort();
        } finally {
          await memory.close();
        }
      };
      const ofBob = (lines: string[]) =>
        lines.filter((l) => l.includes(identityToUserId(bob)) && !l.includes('"action": "export"'));
      const before = await dump();
      expect(before.some((l) => l.includes(aliceId))).toBe(true);

      const out = path.join(dataDir, 'alice-export.json');
      const exported = await cli(['export', alice, '--out', out], env);
      expect(exported).toMatchObject({ code: 0, stderr: '' });
      expect(exported.stdout).toMatch(
        /^exported .* to .*alice-export\.json: 2 memories, 1 settings row\(s\) \(secrets masked\)/,
      );
      expect(fs.statSync(out).mode & 0o777).toBe(0o600);
      const text = fs.readFileSync(out, 'utf8');
      const doc = parseExportDocument(JSON.parse(text), out);
      expect(doc).toMatchObject({ format: EXPORT_FORMAT, identity: alice, userId: aliceId });
      expect(text).not.toContain(`sk-${alice}`);
      expect(text).not.toContain(bob);

      // Without --yes: what would go, exit 2, nothing erased.
      const dry = await cli(['erase', alice], env);
      expect(dry.code).toBe(2);
      expect(dry.stdout).toMatch(/^would erase .*: user row 1, memories 2, settings 1/);
      expect(oneLine(dry)).toMatch(/nothing was erased: run again with --yes/);
      expect((await cli(['retrieve', alice, 'FACT', 'home_city'], env)).stdout).toBe('Lisbon-of-alice\n');

      const erased = await cli(['erase', alice, '--yes', '--json'], env);
      expect(erased).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(erased.stdout)).toMatchObject({
        erased: true,
        userId: aliceId,
        database: { user: true, memories: 2, settings: 1 },
        journal: { removed: 0 },
      });

      // inspect, export and the dump show nothing of alice.
      const inspect = await cli(['inspect', alice, '--json'], env);
      expect(inspect.code, inspect.stderr).toBe(0);
      expect(JSON.parse(inspect.stdout)).toMatchObject({
        profile: null,
        memories: [],
        settings: [],
        audit: [],
        locations: { pendingOutsideDatabase: [] },
      });
      const again = await cli(['export', alice], env);
      expect(again.code).toBe(1);
      expect(again.stdout).toBe('');
      expect(oneLine(again)).toMatch(/USER_NOT_FOUND: nothing is stored for "alice-/);
      const afterErase = await dump();
      expect(
        afterErase.filter((l) => l.includes(aliceId) || l.includes(alice) || l.includes('Lisbon-of-alice')),
      ).toEqual([]);
      expect(ofBob(afterErase)).toEqual(ofBob(before));
      // Row counts: alice's rows gone, one erasure record added.
      const added = afterErase.filter((l) => !before.includes(l));
      expect(added).toHaveLength(1);
      expect(added[0]).toContain('erase');
      expect(added[0]).not.toContain(aliceId);

      // The file imports back; bob is untouched throughout.
      const imported = await cli(['import', alice, out], env);
      expect(imported).toMatchObject({ code: 0, stderr: '' });
      expect(imported.stdout).toMatch(/^imported 2 memories for alice-/);
      expect(imported.stdout).toMatch(/note: 1 settings row\(s\) not restored/);
      expect((await cli(['retrieve', alice, 'FACT', 'home_city'], env)).stdout).toBe('Lisbon-of-alice\n');
      const afterImport = await dump();
      expect(ofBob(afterImport)).toEqual(ofBob(before));
      const without = (lines: string[]) => lines.filter((l) => !l.includes(aliceId));
      expect(without(afterImport).length).toBe(without(before).length + 1); // the erasure record
      expect(afterImport.filter((l) => l.includes(aliceId))).toHaveLength(3); // a new user row, 2 memories
      expect((await cli(['retrieve', bob, 'FACT', 'home_city'], env)).stdout).toBe('Porto-of-bob\n');
    });
  }

  it('bad input: unknown identity, unwritable or existing --out, malformed import files: typed errors, one line, nothing written', async () => {
    const dataDir = folder('clierase-bad');
    const env = { MEMORY_DATA_DIR: dataDir };
    expect((await cli(['store', 'dan@example.com', 'FACT', 'pet', 'cat'], env)).code).toBe(0);

    for (const args of [
      ['export', 'nobody@example.com'],
      ['erase', 'nobody@example.com', '--yes'],
      ['erase', 'nobody@example.com'],
    ]) {
      const result = await cli(args, env);
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.stdout).toBe('');
      expect(oneLine(result)).toMatch(/USER_NOT_FOUND/);
    }

    const readOnly = path.join(dataDir, 'read-only');
    fs.mkdirSync(readOnly, { mode: 0o500 });
    const unwritable =
      process.getuid?.() === 0 ? path.join(dataDir, 'no-such-folder', 'x.json') : path.join(readOnly, 'x.json');
    const existing = path.join(dataDir, 'existing.json');
    fs.writeFileSync(existing, 'keep me');
    for (const [out, message] of [
      [unwritable, /INVALID_OPTION: --out .*: cannot write in/],
      [existing, /INVALID_OPTION: --out .* exists: choose another name, or add --force/],
      [dataDir, /INVALID_OPTION: --out .* is a folder/],
    ] as const) {
      const result = await cli(['export', 'dan@example.com', '--out', out], env);
      expect(result.code, out).toBe(2);
      expect(result.stdout).toBe('');
      expect(oneLine(result)).toMatch(message);
    }
    expect(fs.readFileSync(existing, 'utf8')).toBe('keep me');
    expect(fs.readdirSync(dataDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const forced = await cli(['export', 'dan@example.com', '--out', existing, '--force', '--json'], env);
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ identity: 'dan@example.com', memories: 1 });
    const doc = JSON.parse(fs.readFileSync(existing, 'utf8')) as Record<string, unknown>;

    const file = (name: string, content: unknown) => {
      const where = path.join(dataDir, `${name}.json`);
      fs.writeFileSync(where, typeof content === 'string' ? content : JSON.stringify(content));
      return where;
    };
    const memories = doc.memories as Array<Record<string, unknown>>;
    const malformed = [
      file('version-2', { ...doc, version: 2 }),
      file('unknown-field', { ...doc, owner: 'someone' }),
      file('bad-memory', { ...doc, memories: [...memories, { ...memories[0], category: 'lower' }] }),
      file('wrong-type', { ...doc, memories: [{ ...memories[0], value: 42 }] }),
      file('no-format', { identity: 'dan@example.com', memories: [] }),
      file('proto', `{"__proto__": {"polluted": true}, ${JSON.stringify(doc).slice(1)}`),
      file('truncated', JSON.stringify(doc).slice(0, 80)),
      file('other-identity', { ...doc, identity: 'erin@example.com' }),
    ];
    for (const where of malformed) {
      const result = await cli(['import', 'dan@example.com', where], env);
      expect(result.code, where).toBe(2);
      expect(result.stdout, where).toBe('');
      expect(oneLine(result), where).toMatch(/lk-memory: INVALID_(VALUE|OPTION|CATEGORY): /);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Nothing was written by any of them: dan still has exactly his one memory, erin nothing.
    const dan = JSON.parse((await cli(['export', 'dan@example.com'], env)).stdout) as { memories: unknown[] };
    expect(dan.memories).toHaveLength(1);
    expect((await cli(['export', 'erin@example.com'], env)).code).toBe(1);
    // The document of another identity imports with the explicit option.
    const moved = await cli(['import', 'erin@example.com', existing, '--allow-other-identity'], env);
    expect(moved).toMatchObject({ code: 0, stderr: '' });
    expect((await cli(['retrieve', 'erin@example.com', 'FACT', 'pet'], env)).stdout).toBe('cat\n');
  });
});
