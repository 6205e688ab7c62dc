import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { cli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

describe('lk-memory consent and purge', () => {
  let db: TestDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createTestDatabase('clilife');
    dataDir = tempDataDir('clilife');
  });
  afterAll(async () => {
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  for (const backend of ['embedded', 'postgres'] as const) {
    const env = () => (backend === 'embedded' ? { MEMORY_DATA_DIR: dataDir } : { DATABASE_URL: db.url });

    it(`consent shows, denies (erasing, audited) and grants on ${backend}`, async () => {
      const who = `cli-consent-${backend}@example.com`;
      expect((await cli(['store', who, 'FACT', 'city', 'Oslo'], env())).code).toBe(0);

      const shown = await cli(['consent', who], env());
      expect(shown).toMatchObject({ code: 0, stderr: '' });
      expect(shown.stdout).toMatch(
        /^consent for .*: granted \(the deployment default, MEMORY_CONSENT_DEFAULT\); memory on\n$/,
      );
      const asked = await cli(['consent', who], { ...env(), MEMORY_CONSENT_DEFAULT: 'ask' });
      expect(asked.stdout).toContain(': ask (');

      const denied = await cli(['consent', who, 'denied'], env());
      expect(denied).toMatchObject({ code: 0, stderr: '' });
      expect(denied.stdout).toMatch(
        /: denied; erased 1 memory; nothing more is stored until `lk-memory consent .* granted`\n$/,
      );
      const json = await cli(['consent', who, '--json'], env());
      expect(JSON.parse(json.stdout)).toMatchObject({ identity: who, consent: 'denied', recorded: 'denied' });

      const refused = await cli(['store', who, 'FACT', 'city', 'Oslo'], env());
      expect(refused.code).toBe(4);
      expect(refused.stderr).toMatch(/^lk-memory: CONSENT_DENIED: .*asked not to be remembered/);
      expect((await cli(['list', who, '--json'], env())).stdout.trim()).toBe('[]');

      const granted = await cli(['consent', who, 'granted', '--json'], env());
      expect(JSON.parse(granted.stdout)).toMatchObject({ consent: 'granted', previous: 'denied', erased: 0 });
      expect((await cli(['store', who, 'FACT', 'city', 'Oslo'], env())).code).toBe(0);

      const inspect = JSON.parse((await cli(['inspect', who, '--json'], env())).stdout) as {
        consent: { recorded: string };
        audit: Array<{ action: string; component: string }>;
      };
      expect(inspect.consent.recorded).toBe('granted');
      expect((await cli(['inspect', who], env())).stdout).toMatch(/^consent: {3}granted \(recorded /m);
      expect(inspect.audit.map((a) => a.action)).toEqual(expect.arrayContaining(['consent.denied', 'consent.granted']));
      expect(inspect.audit.find((a) => a.action === 'consent.denied')!.component).toBe('cli');
    });

    it(`consent refuses a state other than granted or denied on ${backend} (exit 2, nothing opened)`, async () => {
      const bad = await cli(['consent', 'x@example.com', 'maybe'], env());
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/expected granted or denied/);
    });

    it(`purge removes expired memories with progress, or prints totals with --json, on ${backend}`, async () => {
      const who = `cli-purge-${backend}@example.com`;
      for (const key of ['a', 'b', 'c']) expect((await cli(['store', who, 'FACT', key, key], env())).code).toBe(0);
      const memory =
        backend === 'embedded'
          ? await openMemory({ env: {}, dataDir, serve: false, journal: false })
          : await openMemory({ env: {}, databaseUrl: db.url, journal: false });
      try {
        await transportOf(memory).query(
          "update public.memories set expires_at = now() - interval '1 millisecond' where key in ('a', 'b')",
        );
      } finally {
        await memory.close();
      }
      const purged = await cli(['purge', '--batch-size', '1'], env());
      expect(purged).toMatchObject({ code: 0, stderr: '' });
      expect(purged.stdout).toMatch(/^purging expired memories\.\.\.\n {2}batch 1: 1 memories, 0 tombstones so far\n/);
      expect(purged.stdout).toMatch(/removed 2 expired memories and 0 old tombstones in 3 batches\n$/);
      expect(JSON.parse((await cli(['list', who, '--json'], env())).stdout).map((m: { key: string }) => m.key)).toEqual(
        ['c'],
      );
      const again = await cli(['purge', '--json'], { ...env(), MEMORY_RETENTION_DAYS: '30' });
      expect(JSON.parse(again.stdout)).toEqual({ memories: 0, tombstones: 0, batches: 1, retentionDays: 30 });
    });
  }

  it('purge --help says what it does', async () => {
    const help = await cli(['purge', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/expired memories/);
    expect(help.stdout).toMatch(/--batch-size/);
    expect(help.stdout).toMatch(/--json/);
  });

  it('bad lifecycle settings are INVALID_CONFIG naming the variable', async () => {
    for (const [name, value] of [
      ['MEMORY_CONSENT_DEFAULT', 'maybe'],
      ['MEMORY_RETENTION_DAYS', '0'],
      ['MEMORY_MAX_PER_USER', 'lots'],
    ] as const) {
      const result = await cli(['purge'], { MEMORY_DATA_DIR: dataDir, [name]: value });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(new RegExp(`INVALID_CONFIG: ${name} `));
    }
  });
});
